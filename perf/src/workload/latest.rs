//! YCSB's skewed-latest key generator: a Zipfian over recency, for read-latest workloads (D).
//!
//! A draw is `newest - z`, where `newest` is the index of the most recently inserted record and `z`
//! is a [`Zipfian`] rank over the current record count. The newest record is therefore the most
//! frequent, the one before it the second most frequent, and so on. Each insert grows the Zipfian by
//! one item, which extends its zeta by one term.
//!
//! The Zipfian spans all `records` records, so every record, the oldest included, can be drawn.
//!
//! Invariants: `records >= 1`, and every draw lies in `0..records`.

use std::num::NonZeroU64;

use rand::Rng;

use super::error::WorkloadError;
use super::scrambled::Zipfian;

/// Zipfian over recency: the newest record is the most frequent.
#[derive(Debug, Clone)]
pub struct SkewedLatest {
    records: NonZeroU64,
    recency: Zipfian,
}

impl SkewedLatest {
    /// A generator over the records `0..records`, whose newest record is `records - 1`.
    pub fn new(records: u64, theta: f64) -> Result<Self, WorkloadError> {
        let records = NonZeroU64::new(records).ok_or(WorkloadError::ItemsZero)?;
        let recency = Zipfian::new(records.get(), theta)?;
        Ok(Self { records, recency })
    }

    /// The number of records, the newest being `records - 1`.
    pub fn records(&self) -> u64 {
        self.records.get()
    }

    /// The skew θ.
    pub fn theta(&self) -> f64 {
        self.recency.theta()
    }

    /// Records that one more record was inserted; it becomes the newest.
    pub fn record_inserted(&mut self) {
        self.records = self.records.saturating_add(1);
        self.recency.set_items(self.records);
    }

    /// Draws one record in `0..records`, skewed towards the newest.
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let newest = self.records.get() - 1;
        // The recency rank is below `records`, so the subtraction stays in range.
        newest - self.recency.next(rng).min(newest)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;
    use crate::workload::scrambled::zeta;

    const DRAWS: u64 = 200_000;

    fn histogram(latest: &SkewedLatest, seed: u64) -> Vec<u64> {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut counts = vec![0_u64; latest.records() as usize];
        for _ in 0..DRAWS {
            counts[latest.next(&mut rng) as usize] += 1;
        }
        counts
    }

    #[test]
    fn latest_newest_keys_are_most_frequent() {
        let latest = SkewedLatest::new(1000, 0.99).unwrap();
        let counts = histogram(&latest, 21);
        // The newest record beats every other record, and the five newest come in recency order.
        let newest = counts[999];
        assert!(counts[..999].iter().all(|&count| count < newest));
        assert!(
            counts[995..].windows(2).all(|pair| pair[0] < pair[1]),
            "{:?}",
            &counts[995..]
        );
        // The newest record is drawn with probability 1/zeta(1000, 0.99).
        let observed = newest as f64 / DRAWS as f64;
        let expected = 1.0 / zeta(1000, 0.99);
        let tolerance = 5.0 * (expected * (1.0 - expected) / DRAWS as f64).sqrt();
        assert!(
            (observed - expected).abs() < tolerance,
            "{observed} vs {expected}"
        );
        // The newest tenth of the records gets far more than a tenth of the draws.
        let newest_tenth: u64 = counts[900..].iter().sum();
        assert!(newest_tenth as f64 / DRAWS as f64 > 0.5);
    }

    #[test]
    fn latest_follows_inserts() {
        let mut latest = SkewedLatest::new(1000, 0.99).unwrap();
        for _ in 0..10 {
            latest.record_inserted();
        }
        assert_eq!(latest.records(), 1010);
        let counts = histogram(&latest, 22);
        let newest = counts[1009];
        assert!(counts[..1009].iter().all(|&count| count < newest));
        // The formerly newest record is now the eleventh most recent and drawn much less often.
        assert!(counts[999] * 3 < newest);
        let expected = 1.0 / zeta(1010, 0.99);
        let observed = newest as f64 / DRAWS as f64;
        assert!((observed - expected).abs() < 5.0 * (expected / DRAWS as f64).sqrt());
    }

    #[test]
    fn latest_single_record_is_always_drawn() {
        let latest = SkewedLatest::new(1, 0.99).unwrap();
        let mut rng = SmallRng::seed_from_u64(23);
        assert!((0..1000).all(|_| latest.next(&mut rng) == 0));
    }

    #[test]
    fn latest_rejects_bad_parameters() {
        assert_eq!(
            SkewedLatest::new(0, 0.99).unwrap_err(),
            WorkloadError::ItemsZero
        );
        assert!(matches!(
            SkewedLatest::new(10, 1.0),
            Err(WorkloadError::ThetaInvalid { .. })
        ));
    }
}
