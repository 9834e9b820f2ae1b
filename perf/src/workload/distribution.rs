//! Key distributions and the key chooser that draws record indices from them.
//!
//! [`KeyDistribution`] names a distribution the way every benchmark report prints it
//! (`uniform`, `zipf-exact(0.99)`, `scrambled-zipfian(0.99)`, `latest(0.99)`) and parses the same
//! names back. [`KeyChooser`] draws record indices in `0..count` and is told when a record is
//! inserted, so that the count grows during a run.
//!
//! How each distribution treats inserted records:
//! - `uniform` and `latest` always span the current count.
//! - `zipf-exact` and `scrambled-zipfian` are built once over a fixed key space, the *capacity*
//!   (by default the loaded record count). A draw that names a record not inserted yet is redrawn,
//!   so the popularity of existing keys does not shift as records are added. A workload that inserts
//!   and reads with these distributions sets the capacity to the records it expects to end with.
//!
//! Invariants: `count >= 1` and every draw lies in `0..count`.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

use super::constants::KEY_REDRAW_ATTEMPTS_MAX;
use super::error::WorkloadError;
use super::latest::SkewedLatest;
use super::scrambled::ScrambledZipfian;
use super::zipf::ZipfExact;

/// A distribution of keys over the records of a workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDistribution {
    /// Every record equally likely.
    Uniform,
    /// Exact Zipf(θ) over the record indices, hottest first (the DINOMO benchmark's generator).
    ZipfExact { theta: f64 },
    /// YCSB's scrambled zipfian: Gray's Zipfian over 10^10 ranks, hashed onto the records.
    ScrambledZipfian { theta: f64 },
    /// YCSB's skewed-latest: a Zipfian over recency, newest record hottest.
    Latest { theta: f64 },
}

impl KeyDistribution {
    /// Checks θ against the range the distribution's generator supports: `[0, inf)` for the exact
    /// Zipf, `[0, 1)` for the YCSB generators.
    pub fn validate(&self) -> Result<(), WorkloadError> {
        let (generator, theta, valid, range) = match *self {
            KeyDistribution::Uniform => return Ok(()),
            KeyDistribution::ZipfExact { theta } => (
                "zipf-exact",
                theta,
                theta.is_finite() && theta >= 0.0,
                "[0, inf)",
            ),
            KeyDistribution::ScrambledZipfian { theta } => (
                "scrambled-zipfian",
                theta,
                (0.0..1.0).contains(&theta),
                "[0, 1)",
            ),
            KeyDistribution::Latest { theta } => {
                ("latest", theta, (0.0..1.0).contains(&theta), "[0, 1)")
            }
        };
        if valid {
            Ok(())
        } else {
            Err(WorkloadError::ThetaInvalid {
                generator,
                theta,
                range,
            })
        }
    }
}

impl fmt::Display for KeyDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDistribution::Uniform => f.write_str("uniform"),
            KeyDistribution::ZipfExact { theta } => write!(f, "zipf-exact({theta})"),
            KeyDistribution::ScrambledZipfian { theta } => write!(f, "scrambled-zipfian({theta})"),
            KeyDistribution::Latest { theta } => write!(f, "latest({theta})"),
        }
    }
}

impl FromStr for KeyDistribution {
    type Err = WorkloadError;

    /// Parses the names that `Display` prints, and validates θ.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let unknown = || WorkloadError::DistributionUnknown {
            text: text.to_owned(),
        };
        let trimmed = text.trim();
        if trimmed == "uniform" {
            return Ok(KeyDistribution::Uniform);
        }
        let (name, rest) = trimmed.split_once('(').ok_or_else(unknown)?;
        let argument = rest.strip_suffix(')').ok_or_else(unknown)?;
        let theta: f64 = argument.trim().parse().map_err(|_| unknown())?;
        let distribution = match name {
            "zipf-exact" => KeyDistribution::ZipfExact { theta },
            "scrambled-zipfian" => KeyDistribution::ScrambledZipfian { theta },
            "latest" => KeyDistribution::Latest { theta },
            _ => return Err(unknown()),
        };
        distribution.validate()?;
        Ok(distribution)
    }
}

/// The generator behind a chooser.
#[derive(Debug, Clone)]
enum Sampler {
    Uniform,
    ZipfExact(ZipfExact),
    ScrambledZipfian(ScrambledZipfian),
    Latest(SkewedLatest),
}

/// Draws record indices in `0..count` from a [`KeyDistribution`]; the count grows with inserts.
#[derive(Debug, Clone)]
pub struct KeyChooser {
    distribution: KeyDistribution,
    count: u64,
    sampler: Sampler,
}

impl KeyChooser {
    /// A chooser over `count` records whose fixed-space distributions span exactly those records.
    pub fn new(distribution: KeyDistribution, count: u64) -> Result<Self, WorkloadError> {
        Self::with_capacity(distribution, count, count)
    }

    /// A chooser over `count` records whose fixed-space distributions (`zipf-exact`,
    /// `scrambled-zipfian`) span `capacity` records, the count the run is expected to reach.
    pub fn with_capacity(
        distribution: KeyDistribution,
        count: u64,
        capacity: u64,
    ) -> Result<Self, WorkloadError> {
        distribution.validate()?;
        if count == 0 {
            return Err(WorkloadError::ItemsZero);
        }
        if capacity < count {
            return Err(WorkloadError::CapacityBelowRecords {
                capacity,
                records: count,
            });
        }
        let sampler = match distribution {
            KeyDistribution::Uniform => Sampler::Uniform,
            KeyDistribution::ZipfExact { theta } => {
                Sampler::ZipfExact(ZipfExact::new(capacity, theta)?)
            }
            KeyDistribution::ScrambledZipfian { theta } => {
                Sampler::ScrambledZipfian(ScrambledZipfian::new(capacity, theta)?)
            }
            KeyDistribution::Latest { theta } => Sampler::Latest(SkewedLatest::new(count, theta)?),
        };
        Ok(Self {
            distribution,
            count,
            sampler,
        })
    }

    /// The distribution this chooser draws from.
    pub fn distribution(&self) -> KeyDistribution {
        self.distribution
    }

    /// The current number of records.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Records that one more record exists: the next draws may name index `count` (the old count).
    pub fn record_inserted(&mut self) {
        self.count = self.count.saturating_add(1);
        if let Sampler::Latest(latest) = &mut self.sampler {
            latest.record_inserted();
        }
    }

    /// Draws one record index in `0..count`.
    pub fn next<R: Rng + ?Sized>(&mut self, rng: &mut R) -> u64 {
        let count = self.count;
        match &self.sampler {
            Sampler::Uniform => rng.random_range(0..count),
            Sampler::ZipfExact(zipf) => draw_below(count, rng, |rng| zipf.sample(rng)),
            Sampler::ScrambledZipfian(scrambled) => {
                draw_below(count, rng, |rng| scrambled.next(rng))
            }
            Sampler::Latest(latest) => latest.next(rng),
        }
    }
}

/// Draws until the index names an existing record. After [`KEY_REDRAW_ATTEMPTS_MAX`] misses the
/// last draw is folded into range, which bounds the work of one call whatever the capacity.
fn draw_below<R: Rng + ?Sized>(
    count: u64,
    rng: &mut R,
    mut draw: impl FnMut(&mut R) -> u64,
) -> u64 {
    let mut index = draw(rng);
    for _ in 1..KEY_REDRAW_ATTEMPTS_MAX {
        if index < count {
            return index;
        }
        index = draw(rng);
    }
    index % count
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    #[test]
    fn display_names_are_exact() {
        assert_eq!(KeyDistribution::Uniform.to_string(), "uniform");
        assert_eq!(
            KeyDistribution::ZipfExact { theta: 0.99 }.to_string(),
            "zipf-exact(0.99)"
        );
        assert_eq!(
            KeyDistribution::ScrambledZipfian { theta: 0.99 }.to_string(),
            "scrambled-zipfian(0.99)"
        );
        assert_eq!(
            KeyDistribution::Latest { theta: 0.99 }.to_string(),
            "latest(0.99)"
        );
        assert_eq!(
            KeyDistribution::ZipfExact { theta: 1.2 }.to_string(),
            "zipf-exact(1.2)"
        );
    }

    #[test]
    fn parse_round_trips_display() {
        for distribution in [
            KeyDistribution::Uniform,
            KeyDistribution::ZipfExact { theta: 0.99 },
            KeyDistribution::ZipfExact { theta: 1.5 },
            KeyDistribution::ScrambledZipfian { theta: 0.99 },
            KeyDistribution::ScrambledZipfian { theta: 0.5 },
            KeyDistribution::Latest { theta: 0.99 },
        ] {
            assert_eq!(
                distribution.to_string().parse::<KeyDistribution>(),
                Ok(distribution)
            );
        }
        for text in [
            "zipfian",
            "zipf-exact",
            "zipf-exact(x)",
            "latest(0.5",
            "hotspot(0.2)",
            "",
        ] {
            assert!(
                matches!(
                    text.parse::<KeyDistribution>(),
                    Err(WorkloadError::DistributionUnknown { .. })
                ),
                "{text:?} accepted"
            );
        }
        assert!(matches!(
            "latest(1.0)".parse::<KeyDistribution>(),
            Err(WorkloadError::ThetaInvalid { .. })
        ));
    }

    #[test]
    fn chooser_rejects_bad_parameters() {
        assert_eq!(
            KeyChooser::new(KeyDistribution::Uniform, 0).unwrap_err(),
            WorkloadError::ItemsZero
        );
        assert_eq!(
            KeyChooser::with_capacity(KeyDistribution::Uniform, 10, 9).unwrap_err(),
            WorkloadError::CapacityBelowRecords {
                capacity: 9,
                records: 10
            }
        );
        for distribution in [
            KeyDistribution::ZipfExact { theta: -1.0 },
            KeyDistribution::ScrambledZipfian { theta: 1.0 },
            KeyDistribution::Latest { theta: f64::NAN },
        ] {
            assert!(matches!(
                KeyChooser::new(distribution, 10),
                Err(WorkloadError::ThetaInvalid { .. })
            ));
        }
    }

    #[test]
    fn chooser_uniform_and_latest_span_inserted_records() {
        for distribution in [
            KeyDistribution::Uniform,
            KeyDistribution::Latest { theta: 0.99 },
        ] {
            let mut chooser = KeyChooser::new(distribution, 10).unwrap();
            for _ in 0..5 {
                chooser.record_inserted();
            }
            assert_eq!(chooser.count(), 15);
            let mut rng = SmallRng::seed_from_u64(31);
            let mut seen = [false; 15];
            for _ in 0..10_000 {
                seen[chooser.next(&mut rng) as usize] = true;
            }
            assert!(seen.iter().all(|&s| s), "{distribution}: {seen:?}");
        }
    }

    #[test]
    fn chooser_with_capacity_never_returns_uninserted_records() {
        for distribution in [
            KeyDistribution::ZipfExact { theta: 0.99 },
            KeyDistribution::ScrambledZipfian { theta: 0.99 },
        ] {
            let mut chooser = KeyChooser::with_capacity(distribution, 100, 200).unwrap();
            let mut rng = SmallRng::seed_from_u64(32);
            assert!((0..10_000).all(|_| chooser.next(&mut rng) < 100));
            for _ in 0..100 {
                chooser.record_inserted();
            }
            let mut seen_new = false;
            for _ in 0..10_000 {
                let index = chooser.next(&mut rng);
                assert!(index < 200);
                seen_new |= index >= 100;
            }
            assert!(seen_new, "{distribution} never drew an inserted record");
        }
    }

    #[test]
    fn chooser_exact_zipf_hottest_record_is_index_0() {
        let mut chooser =
            KeyChooser::new(KeyDistribution::ZipfExact { theta: 0.99 }, 1000).unwrap();
        let mut rng = SmallRng::seed_from_u64(33);
        let mut counts = vec![0_u64; 1000];
        for _ in 0..100_000 {
            counts[chooser.next(&mut rng) as usize] += 1;
        }
        assert!(counts[1..].iter().all(|&count| count < counts[0]));
    }

    #[test]
    fn redraw_is_bounded() {
        // A draw that never lands in range still returns, folded into range.
        let mut rng = SmallRng::seed_from_u64(34);
        assert_eq!(draw_below(10, &mut rng, |_| 1_000_003), 3);
    }

    proptest! {
        #[test]
        fn chooser_draws_stay_in_range(
            which in 0_u8..4,
            theta in 0.0_f64..0.999,
            count in 1_u64..2000,
            extra in 0_u64..2000,
            inserts in 0_u64..50,
            seed: u64,
        ) {
            let distribution = match which {
                0 => KeyDistribution::Uniform,
                1 => KeyDistribution::ZipfExact { theta },
                2 => KeyDistribution::ScrambledZipfian { theta },
                _ => KeyDistribution::Latest { theta },
            };
            let mut chooser = KeyChooser::with_capacity(distribution, count, count + extra).unwrap();
            let mut rng = SmallRng::seed_from_u64(seed);
            for _ in 0..inserts {
                chooser.record_inserted();
                prop_assert!(chooser.next(&mut rng) < chooser.count());
            }
            for _ in 0..100 {
                prop_assert!(chooser.next(&mut rng) < count + inserts);
            }
        }
    }
}
