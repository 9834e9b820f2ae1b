//! The exact Zipf(θ) sampler of the original DINOMO benchmark.
//!
//! Item `i` (0-based) is drawn with probability `(i + 1)^-θ / H(n, θ)`, where
//! `H(n, θ) = Σ_{k=1..n} k^-θ`. The sampler precomputes the cumulative distribution once
//! (8 bytes per item) and answers each draw with one uniform variate and a binary search, so a draw
//! costs O(log n) and follows the distribution exactly up to floating-point rounding. θ = 0 is the
//! uniform distribution. Unlike the YCSB generators, the hottest item is always item 0, item 1 is the
//! second hottest, and so on.
//!
//! Invariants: the table is non-empty, non-decreasing, and its last entry is exactly 1.0, so every
//! uniform variate in `[0, 1)` finds an item.

use rand::Rng;

use super::constants::ZIPF_EXACT_ITEMS_MAX;
use super::error::WorkloadError;

/// Exact Zipf(θ) over the items `0..items`, sampled by binary search in a precomputed CDF.
#[derive(Debug, Clone)]
pub struct ZipfExact {
    theta: f64,
    /// `H(n, θ)`, kept to answer `probability` without a second pass over the items.
    normalizer: f64,
    /// `cdf[i]` is the probability of drawing an item `<= i`.
    cdf: Vec<f64>,
}

impl ZipfExact {
    /// Builds the table for `items` items with skew `theta`.
    ///
    /// Fails when `items` is 0 or above [`ZIPF_EXACT_ITEMS_MAX`], when `theta` is negative, NaN or
    /// infinite, or when the table cannot be allocated.
    pub fn new(items: u64, theta: f64) -> Result<Self, WorkloadError> {
        validate_theta(theta)?;
        if items == 0 {
            return Err(WorkloadError::ItemsZero);
        }
        if items > ZIPF_EXACT_ITEMS_MAX {
            return Err(WorkloadError::ItemsTooMany {
                items,
                items_max: ZIPF_EXACT_ITEMS_MAX,
            });
        }
        let table_bytes = items * 8;
        let len =
            usize::try_from(items).map_err(|_| WorkloadError::TableAllocation { table_bytes })?;
        let mut cdf = Vec::new();
        // The table is the one large allocation of a workload; failing to get it is reported to the
        // caller instead of aborting the process.
        cdf.try_reserve_exact(len)
            .map_err(|_| WorkloadError::TableAllocation { table_bytes })?;

        let mut sum = 0.0_f64;
        for rank in 1..=items {
            sum += (rank as f64).powf(-theta);
            cdf.push(sum);
        }
        let normalizer = sum;
        for entry in &mut cdf {
            *entry /= normalizer;
        }
        // Division leaves the last entry a rounding error away from 1; pinning it makes the search
        // total for every variate below 1.
        if let Some(last) = cdf.last_mut() {
            *last = 1.0;
        }
        Ok(Self {
            theta,
            normalizer,
            cdf,
        })
    }

    /// The number of items, `n`.
    pub fn items(&self) -> u64 {
        self.cdf.len() as u64
    }

    /// The skew θ.
    pub fn theta(&self) -> f64 {
        self.theta
    }

    /// The analytic probability of item `item`, or 0 for an item outside `0..items`.
    pub fn probability(&self, item: u64) -> f64 {
        if item >= self.items() {
            return 0.0;
        }
        ((item + 1) as f64).powf(-self.theta) / self.normalizer
    }

    /// Draws one item in `0..items`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let u: f64 = rng.random();
        self.item_at(u)
    }

    /// The item whose CDF interval contains `u`, for `u` in `[0, 1)`: the first item whose
    /// cumulative probability exceeds `u`.
    fn item_at(&self, u: f64) -> u64 {
        let index = self.cdf.partition_point(|&cumulative| cumulative <= u);
        // A variate of exactly 1.0 (which `random` never yields) would land one past the end.
        index.min(self.cdf.len() - 1) as u64
    }
}

fn validate_theta(theta: f64) -> Result<(), WorkloadError> {
    if theta.is_finite() && theta >= 0.0 {
        Ok(())
    } else {
        Err(WorkloadError::ThetaInvalid {
            generator: "zipf-exact",
            theta,
            range: "[0, inf)",
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;
    use crate::workload::testing::{chi_square, chi_square_critical_p001};

    /// The analytic Zipf probabilities, computed here independently of the sampler's table.
    fn analytic(items: u64, theta: f64) -> Vec<f64> {
        let weights: Vec<f64> = (1..=items).map(|k| 1.0 / (k as f64).powf(theta)).collect();
        let total: f64 = weights.iter().sum();
        weights.iter().map(|w| w / total).collect()
    }

    fn histogram(zipf: &ZipfExact, draws: u64, seed: u64) -> Vec<u64> {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut counts = vec![0_u64; zipf.items() as usize];
        for _ in 0..draws {
            counts[zipf.sample(&mut rng) as usize] += 1;
        }
        counts
    }

    /// Runs the χ² goodness-of-fit test of `draws` samples of Zipf(`theta_sampled`) against the
    /// analytic Zipf(`theta_expected`); returns the statistic and its critical value at p = 0.001.
    fn fit(items: u64, theta_sampled: f64, theta_expected: f64, seed: u64) -> (f64, f64) {
        const DRAWS: u64 = 1_000_000;
        let zipf = ZipfExact::new(items, theta_sampled).expect("valid parameters");
        let counts = histogram(&zipf, DRAWS, seed);
        let test = chi_square(&counts, &analytic(items, theta_expected));
        assert!(test.bins > 10, "too few bins for a meaningful test");
        (
            test.statistic,
            chi_square_critical_p001(test.degrees_of_freedom),
        )
    }

    #[test]
    fn zipf_exact_chi_square_theta_099() {
        let (statistic, critical) = fit(1000, 0.99, 0.99, 0x5eed_0001);
        assert!(statistic < critical, "χ² {statistic} ≥ critical {critical}");
    }

    #[test]
    fn zipf_exact_chi_square_theta_0_is_uniform() {
        let (statistic, critical) = fit(1000, 0.0, 0.0, 0x5eed_0002);
        assert!(statistic < critical, "χ² {statistic} ≥ critical {critical}");
    }

    #[test]
    fn zipf_exact_chi_square_theta_2_bins_the_tail() {
        // At θ = 2 the expected count of item 999 is about 0.6 in 10^6 draws, so the test only holds
        // together because the tail is binned.
        let (statistic, critical) = fit(1000, 2.0, 2.0, 0x5eed_0003);
        assert!(statistic < critical, "χ² {statistic} ≥ critical {critical}");
    }

    #[test]
    fn chi_square_detects_a_slightly_wrong_theta() {
        // The test has power: samples of Zipf(0.99) are told apart from Zipf(0.95).
        let (statistic, critical) = fit(1000, 0.99, 0.95, 0x5eed_0004);
        assert!(statistic > critical, "χ² {statistic} < critical {critical}");
    }

    #[test]
    fn zipf_exact_probabilities_match_the_definition() {
        let zipf = ZipfExact::new(4, 1.0).unwrap();
        // H(4, 1) = 1 + 1/2 + 1/3 + 1/4 = 25/12, so P(item 0) = 12/25 and P(item 3) = 3/25.
        assert!((zipf.probability(0) - 12.0 / 25.0).abs() < 1e-15);
        assert!((zipf.probability(3) - 3.0 / 25.0).abs() < 1e-15);
        assert_eq!(zipf.probability(4), 0.0);
        let total: f64 = (0..4).map(|i| zipf.probability(i)).sum();
        assert!((total - 1.0).abs() < 1e-15);
        assert_eq!(zipf.cdf.last().copied(), Some(1.0));
    }

    #[test]
    fn zipf_exact_search_maps_variates_to_cdf_intervals() {
        let zipf = ZipfExact::new(4, 1.0).unwrap();
        // The CDF is 12/25, 18/25, 22/25, 1.
        assert_eq!(zipf.item_at(0.0), 0);
        assert_eq!(zipf.item_at(0.479), 0);
        assert_eq!(zipf.item_at(0.481), 1);
        assert_eq!(zipf.item_at(0.719), 1);
        assert_eq!(zipf.item_at(0.721), 2);
        assert_eq!(zipf.item_at(0.881), 3);
        assert_eq!(zipf.item_at(1.0 - f64::EPSILON), 3);
        assert_eq!(zipf.item_at(1.0), 3);
    }

    #[test]
    fn zipf_exact_rejects_bad_parameters() {
        assert_eq!(
            ZipfExact::new(0, 0.99).unwrap_err(),
            WorkloadError::ItemsZero
        );
        assert_eq!(
            ZipfExact::new(ZIPF_EXACT_ITEMS_MAX + 1, 0.99).unwrap_err(),
            WorkloadError::ItemsTooMany {
                items: ZIPF_EXACT_ITEMS_MAX + 1,
                items_max: ZIPF_EXACT_ITEMS_MAX
            }
        );
        assert!(matches!(
            ZipfExact::new(u64::MAX, 0.99),
            Err(WorkloadError::ItemsTooMany { .. })
        ));
        for theta in [-0.1, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(
                matches!(
                    ZipfExact::new(10, theta),
                    Err(WorkloadError::ThetaInvalid { .. })
                ),
                "theta {theta} accepted"
            );
        }
    }

    #[test]
    fn zipf_exact_single_item_always_draws_it() {
        let zipf = ZipfExact::new(1, 0.99).unwrap();
        let mut rng = SmallRng::seed_from_u64(1);
        assert!((0..1000).all(|_| zipf.sample(&mut rng) == 0));
    }

    #[test]
    fn zipf_exact_same_seed_same_sequence() {
        let zipf = ZipfExact::new(10_000, 0.99).unwrap();
        let draw = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..1000).map(|_| zipf.sample(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    proptest! {
        #[test]
        fn zipf_exact_samples_stay_in_range(
            items in 1_u64..5000,
            theta in 0.0_f64..4.0,
            seed: u64,
        ) {
            let zipf = ZipfExact::new(items, theta).unwrap();
            let mut rng = SmallRng::seed_from_u64(seed);
            for _ in 0..200 {
                prop_assert!(zipf.sample(&mut rng) < items);
            }
            prop_assert!(zipf.cdf.windows(2).all(|pair| pair[0] <= pair[1]));
        }
    }
}
