//! YCSB's zipfian generators: Gray et al.'s approximate Zipfian and its scrambled form.
//!
//! [`Zipfian`] draws ranks `base..base + items` with the method of Gray et al. ("Quickly generating
//! billion-record synthetic databases", SIGMOD 1994): after computing zeta(n, θ) once, a draw costs
//! one uniform variate and one `powf`, and needs no table. The first two ranks are exact; the rest
//! follow a continuous approximation of the Zipf tail, so the generator is close to, not equal to,
//! Zipf(θ). The item count may grow between draws (workload D inserts records); zeta is then
//! extended term by term instead of being recomputed.
//!
//! [`ScrambledZipfian`] is what YCSB's `requestdistribution=zipfian` means: a rank drawn from a
//! Zipfian over [`SCRAMBLED_SOURCE_ITEMS`] ranks is hashed with [`fnvhash64`] and reduced modulo the
//! key count. The hot keys are scattered over the key space, and because distinct ranks collide
//! modulo the key count the skew over n keys is flatter than an exact Zipf(θ) over n keys.
//!
//! Invariants: θ is in `[0, 1)` (the method needs `1 / (1 - θ)`), `items >= 1`, and every draw lies
//! in `base..base + items`.

use std::num::NonZeroU64;

use rand::Rng;

use super::constants::{
    SCRAMBLED_SOURCE_ITEMS, SCRAMBLED_ZETAN_THETA_099, ZETA_DIRECT_TERMS, ZIPFIAN_THETA_YCSB,
};
use super::error::WorkloadError;

/// The 64-bit FNV offset basis.
pub const FNV_OFFSET_BASIS_64: u64 = 0xCBF2_9CE4_8422_2325;
/// The 64-bit FNV prime.
pub const FNV_PRIME_64: u64 = 1_099_511_628_211;

/// YCSB's 64-bit FNV-1a hash of the eight octets of `value`, low octet first, made non-negative.
///
/// The hash is taken as a signed 64-bit integer and its magnitude returned, so the result is at most
/// 2^63; it is exactly 2^63 only when the signed hash is `i64::MIN`, whose magnitude has no signed
/// representation.
pub fn fnvhash64(value: u64) -> u64 {
    let mut hash = FNV_OFFSET_BASIS_64;
    for octet in value.to_le_bytes() {
        hash ^= u64::from(octet);
        hash = hash.wrapping_mul(FNV_PRIME_64);
    }
    (hash as i64).unsigned_abs()
}

/// zeta(n, θ) = Σ_{i=1..n} i^-θ.
///
/// The first [`ZETA_DIRECT_TERMS`] terms are summed directly and the rest by the Euler–Maclaurin
/// formula, so the cost is bounded for any `n` (YCSB's ten-billion-item source space included) and
/// the result agrees with a direct sum to about 1e-12 relative.
pub fn zeta(items: u64, theta: f64) -> f64 {
    zeta_split(items, theta, ZETA_DIRECT_TERMS)
}

/// Extends a partial zeta sum: adds the terms for ranks `items_from + 1 ..= items_to` to `sum`.
/// With `sum = zeta(items_from, θ)` the result is `zeta(items_to, θ)`.
pub fn zeta_extend(items_from: u64, items_to: u64, theta: f64, sum: f64) -> f64 {
    let mut sum = sum;
    for rank in items_from.saturating_add(1)..=items_to {
        sum += 1.0 / (rank as f64).powf(theta);
    }
    sum
}

fn zeta_split(items: u64, theta: f64, direct_terms: u64) -> f64 {
    if items <= direct_terms {
        return zeta_extend(0, items, theta, 0.0);
    }
    zeta_extend(0, direct_terms, theta, 0.0) + zeta_tail(direct_terms + 1, items, theta)
}

/// Σ_{k=first..=last} k^-θ by the Euler–Maclaurin formula with its first correction term. The
/// next term, θ(θ+1)(θ+2)/720 · first^(-θ-3), is below 1e-16 for `first` past 4096 (θ < 1), so
/// it and all later terms vanish in double-precision rounding.
fn zeta_tail(first: u64, last: u64, theta: f64) -> f64 {
    let (a, b) = (first as f64, last as f64);
    let s = 1.0 - theta;
    let log_ratio = (b / a).ln();
    // ∫_a^b x^-θ dx = (b^s - a^s) / s, written with expm1 so that θ close to 1 loses no digits.
    let integral = if s == 0.0 {
        log_ratio
    } else {
        a.powf(s) * (s * log_ratio).exp_m1() / s
    };
    let f = |x: f64| x.powf(-theta);
    // The derivative of x^-θ; B2/2! = 1/12 weighs its difference.
    let derivative = |x: f64| -theta * x.powf(-theta - 1.0);
    integral + (f(a) + f(b)) / 2.0 + (derivative(b) - derivative(a)) / 12.0
}

/// Gray et al.'s Zipfian over the ranks `base..base + items`; rank `base` is the most frequent.
#[derive(Debug, Clone)]
pub struct Zipfian {
    base: u64,
    items: u64,
    theta: f64,
    alpha: f64,
    zeta2: f64,
    zetan: f64,
    eta: f64,
    /// `1 + 0.5^θ`: below it (times zetan) a variate is rank `base + 1`.
    second_threshold: f64,
}

impl Zipfian {
    /// A Zipfian over `0..items`.
    pub fn new(items: u64, theta: f64) -> Result<Self, WorkloadError> {
        Self::with_base(0, items, theta)
    }

    /// A Zipfian over `base..base + items`.
    pub fn with_base(base: u64, items: u64, theta: f64) -> Result<Self, WorkloadError> {
        validate_theta(theta)?;
        Self::with_zetan(base, items, theta, zeta(items, theta))
    }

    /// A Zipfian over `base..base + items` that takes zeta(items, θ) as given instead of computing
    /// it, for item counts whose zeta is known in advance.
    pub fn with_zetan(
        base: u64,
        items: u64,
        theta: f64,
        zetan: f64,
    ) -> Result<Self, WorkloadError> {
        validate_theta(theta)?;
        if items == 0 {
            return Err(WorkloadError::ItemsZero);
        }
        if base.checked_add(items - 1).is_none() {
            return Err(WorkloadError::BaseOverflow { base, items });
        }
        let zeta2 = zeta(2, theta);
        let mut zipfian = Self {
            base,
            items,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta2,
            zetan,
            eta: 0.0,
            second_threshold: 1.0 + 0.5_f64.powf(theta),
        };
        zipfian.eta = zipfian.eta_for(items);
        Ok(zipfian)
    }

    /// eta = (1 - (2/n)^(1-θ)) / (1 - zeta(2,θ)/zeta(n,θ)) for the current zeta(n, θ).
    fn eta_for(&self, items: u64) -> f64 {
        (1.0 - (2.0 / items as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta2 / self.zetan)
    }

    /// The first rank.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The number of ranks.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// The skew θ.
    pub fn theta(&self) -> f64 {
        self.theta
    }

    /// alpha = 1 / (1 - θ).
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// eta for the current item count.
    pub fn eta(&self) -> f64 {
        self.eta
    }

    /// zeta(items, θ).
    pub fn zetan(&self) -> f64 {
        self.zetan
    }

    /// Changes the number of ranks. Modest growth extends zeta by the new terms only, which makes
    /// one insert O(1); a shrink or a jump by more than [`ZETA_DIRECT_TERMS`] recomputes zeta, which
    /// costs a bounded amount of work whatever the count.
    pub fn set_items(&mut self, items: NonZeroU64) {
        // Keep the last rank representable; a growing key space never gets near this.
        let items = items.get().min((u64::MAX - self.base).saturating_add(1));
        if items == self.items {
            return;
        }
        self.zetan = if items > self.items && items - self.items <= ZETA_DIRECT_TERMS {
            zeta_extend(self.items, items, self.theta, self.zetan)
        } else {
            zeta(items, self.theta)
        };
        self.items = items;
        self.eta = self.eta_for(items);
    }

    /// Draws one rank in `base..base + items`.
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let u: f64 = rng.random();
        self.rank_at(u)
    }

    /// The rank for the uniform variate `u` in `[0, 1)`.
    fn rank_at(&self, u: f64) -> u64 {
        let uz = u * self.zetan;
        if uz < 1.0 {
            return self.base;
        }
        if uz < self.second_threshold {
            // With one item there is no second rank, and rounding must not invent one.
            return self.base + 1.min(self.items - 1);
        }
        let offset = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        // The approximation reaches n itself when u rounds up to 1, and is NaN (cast to 0) for the
        // degenerate eta of two items; both are folded back into the range.
        self.base + offset.min(self.items - 1)
    }
}

fn validate_theta(theta: f64) -> Result<(), WorkloadError> {
    if (0.0..1.0).contains(&theta) {
        Ok(())
    } else {
        Err(WorkloadError::ThetaInvalid {
            generator: "zipfian",
            theta,
            range: "[0, 1)",
        })
    }
}

/// YCSB's scrambled zipfian over the keys `0..items`: `fnvhash64(rank) % items`, where the rank is
/// drawn from a [`Zipfian`] over [`SCRAMBLED_SOURCE_ITEMS`] ranks.
#[derive(Debug, Clone)]
pub struct ScrambledZipfian {
    items: u64,
    source: Zipfian,
}

impl ScrambledZipfian {
    /// A scrambled zipfian over `0..items`. For θ = 0.99 the source's zeta is YCSB's precomputed
    /// constant; for any other θ it is computed.
    pub fn new(items: u64, theta: f64) -> Result<Self, WorkloadError> {
        if items == 0 {
            return Err(WorkloadError::ItemsZero);
        }
        let source = if theta == ZIPFIAN_THETA_YCSB {
            Zipfian::with_zetan(0, SCRAMBLED_SOURCE_ITEMS, theta, SCRAMBLED_ZETAN_THETA_099)?
        } else {
            Zipfian::new(SCRAMBLED_SOURCE_ITEMS, theta)?
        };
        Ok(Self { items, source })
    }

    /// The number of keys.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// The skew θ of the source Zipfian.
    pub fn theta(&self) -> f64 {
        self.source.theta()
    }

    /// The Zipfian the ranks are drawn from.
    pub fn source(&self) -> &Zipfian {
        &self.source
    }

    /// Draws one key in `0..items`.
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        fnvhash64(self.source.next(rng)) % self.items
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    /// zeta by a plain loop, the definition itself.
    fn zeta_direct(items: u64, theta: f64) -> f64 {
        (1..=items).map(|i| 1.0 / (i as f64).powf(theta)).sum()
    }

    fn fraction<F: FnMut() -> bool>(draws: u64, mut hit: F) -> f64 {
        (0..draws).filter(|_| hit()).count() as f64 / draws as f64
    }

    /// Five standard deviations of a binomial proportion, the tolerance of the frequency tests.
    fn tolerance(probability: f64, draws: u64) -> f64 {
        5.0 * (probability * (1.0 - probability) / draws as f64).sqrt()
    }

    #[test]
    fn fnvhash64_matches_hand_derivation() {
        // fnvhash64(0): every octet is 0, so each round is `hash = hash * prime mod 2^64`.
        //   start      0xcbf29ce484222325 (offset basis)
        //   round 0 -> 0xaf63bd4c8601b7df
        //   round 1 -> 0x08328807b4eb6fed
        //   round 2 -> 0xd94d12186c0f2fb7
        //   round 3 -> 0x4d25767f9dce13f5
        //   round 4 -> 0xe4bc4fd9252be94f
        //   round 5 -> 0xd7e4fcfa299d713d
        //   round 6 -> 0x778b1a14b6876aa7
        //   round 7 -> 0xa8c7f832281a39c5
        // The top bit is set, so as i64 the hash is 0xa8c7f832281a39c5 - 2^64 and its magnitude is
        // 2^64 - 0xa8c7f832281a39c5 = 0x573807cdd7e5c63b = 6284781860667377211.
        let mut hash = FNV_OFFSET_BASIS_64;
        let rounds_for_zero = [
            0xaf63_bd4c_8601_b7df_u64,
            0x0832_8807_b4eb_6fed,
            0xd94d_1218_6c0f_2fb7,
            0x4d25_767f_9dce_13f5,
            0xe4bc_4fd9_252b_e94f,
            0xd7e4_fcfa_299d_713d,
            0x778b_1a14_b687_6aa7,
            0xa8c7_f832_281a_39c5,
        ];
        for expected in rounds_for_zero {
            hash = hash.wrapping_mul(FNV_PRIME_64);
            assert_eq!(hash, expected);
        }
        assert_eq!(0_u64.wrapping_sub(hash), 0x5738_07cd_d7e5_c63b);
        assert_eq!(fnvhash64(0), 6_284_781_860_667_377_211);

        // fnvhash64(1): only round 0 differs: 0xcbf29ce484222325 ^ 0x01 = 0xcbf29ce484222324, times
        // the prime gives 0xaf63bc4c8601b62c; rounds 1..7 multiply by the prime again, ending at
        // 0x89cd31291d2aefa4, whose top bit is set: 2^64 - 0x89cd31291d2aefa4 = 8517097267634966620.
        assert_eq!(
            (FNV_OFFSET_BASIS_64 ^ 1).wrapping_mul(FNV_PRIME_64),
            0xaf63_bc4c_8601_b62c
        );
        assert_eq!(fnvhash64(1), 8_517_097_267_634_966_620);

        // 0x0102030405060708 feeds the octets 08, 07, ..., 01 and ends at 0x0c6d3ec3ba1f6dd5,
        // whose top bit is clear, so it is returned unchanged: 895447315735140821.
        assert_eq!(fnvhash64(0x0102_0304_0506_0708), 895_447_315_735_140_821);
        // Further values, derived the same way with the round-by-round rule.
        assert_eq!(fnvhash64(7), 5_465_015_992_139_406_178);
        assert_eq!(fnvhash64(42), 55_488_592_825_689_361);
        assert_eq!(fnvhash64(1000), 5_952_875_239_596_136_740);
    }

    #[test]
    fn fnvhash64_is_non_negative() {
        for value in (0..10_000_u64).chain([u64::MAX, i64::MAX as u64, 1 << 63]) {
            assert!(fnvhash64(value) <= 1 << 63);
        }
    }

    #[test]
    fn zeta_2_by_hand() {
        // zeta(2, 0.99) = 1 + 2^-0.99 = 1 + 0.5 * 2^0.01 = 1 + 0.5 * e^(0.01 ln 2)
        //               = 1 + 0.5 * e^0.006931472 = 1 + 0.5 * 1.006955550 = 1.503477775.
        assert!((zeta(2, 0.99) - 1.503_477_775_028_359_4).abs() < 1e-15);
        // zeta(2, 0) counts the items.
        assert_eq!(zeta(2, 0.0), 2.0);
        assert_eq!(zeta(0, 0.5), 0.0);
    }

    #[test]
    fn alpha_and_eta_by_hand() {
        // θ = 0.5, n = 4: zeta(4) = 1 + 1/√2 + 1/√3 + 1/2 = 2.784457050, zeta(2) = 1.707106781,
        // alpha = 1 / (1 - 0.5) = 2,
        // eta = (1 - (2/4)^0.5) / (1 - 1.707106781 / 2.784457050)
        //     = 0.292893219 / 0.386918233 = 0.756994834.
        let zipfian = Zipfian::new(4, 0.5).unwrap();
        assert!((zipfian.zetan() - 2.784_457_050_376_173).abs() < 1e-12);
        assert_eq!(zipfian.alpha(), 2.0);
        assert!((zipfian.eta() - 0.756_994_833_951_206_9).abs() < 1e-12);

        // θ = 0.99: alpha = 1 / 0.01 = 100 (up to the rounding of 1 - 0.99).
        let zipfian = Zipfian::new(1000, 0.99).unwrap();
        assert!((zipfian.alpha() - 100.0).abs() < 1e-9);
        // eta from its definition with zeta summed directly.
        let eta = (1.0 - (2.0_f64 / 1000.0).powf(0.01))
            / (1.0 - zeta_direct(2, 0.99) / zeta_direct(1000, 0.99));
        assert!((zipfian.eta() - eta).abs() < 1e-12);
    }

    #[test]
    fn zeta_tail_matches_direct_sum() {
        // Force the Euler–Maclaurin path from a short head so it covers most of the series.
        for theta in [0.0, 0.3, 0.5, 0.9, 0.99, 0.999_999, 1.0, 1.5] {
            let direct = zeta_direct(1_000_000, theta);
            let split = zeta_split(1_000_000, theta, 4096);
            assert!(
                ((split - direct) / direct).abs() < 1e-12,
                "theta {theta}: {split} vs {direct}"
            );
        }
        // And the default split, just past the direct head.
        let direct = zeta_direct(ZETA_DIRECT_TERMS + 10, 0.99);
        assert!(((zeta(ZETA_DIRECT_TERMS + 10, 0.99) - direct) / direct).abs() < 1e-12);
    }

    #[test]
    fn zeta_of_the_scrambled_source_matches_the_ycsb_constant() {
        let computed = zeta(SCRAMBLED_SOURCE_ITEMS, ZIPFIAN_THETA_YCSB);
        assert!(
            ((computed - SCRAMBLED_ZETAN_THETA_099) / SCRAMBLED_ZETAN_THETA_099).abs() < 1e-11,
            "{computed} vs {SCRAMBLED_ZETAN_THETA_099}"
        );
    }

    #[test]
    fn zipfian_first_ranks_have_their_exact_frequencies() {
        // P(base) = 1/zeta(n) and P(base + 1) = 0.5^θ/zeta(n): the two ranks the method draws
        // exactly.
        const DRAWS: u64 = 1_000_000;
        let base = 7;
        let zipfian = Zipfian::with_base(base, 1000, 0.99).unwrap();
        let zetan = zeta_direct(1000, 0.99);
        let mut rng = SmallRng::seed_from_u64(11);
        let mut counts = [0_u64; 3];
        for _ in 0..DRAWS {
            let rank = zipfian.next(&mut rng);
            assert!((base..base + 1000).contains(&rank));
            if rank < base + 2 {
                counts[(rank - base) as usize] += 1;
            } else {
                counts[2] += 1;
            }
        }
        let first = 1.0 / zetan;
        let second = 0.5_f64.powf(0.99) / zetan;
        let observed_first = counts[0] as f64 / DRAWS as f64;
        let observed_second = counts[1] as f64 / DRAWS as f64;
        assert!((observed_first - first).abs() < tolerance(first, DRAWS));
        assert!((observed_second - second).abs() < tolerance(second, DRAWS));
    }

    #[test]
    fn zipfian_tail_follows_the_gray_formula() {
        // In the tail branch, rank = floor(n (eta u - eta + 1)^alpha) < k exactly when
        // 1 - eta (1 - u) < (k/n)^(1-θ), that is when u < 1 - (1 - (k/n)^(1-θ)) / eta. Every
        // smaller u yields a rank below k too, so P(rank < k) is that bound.
        const DRAWS: u64 = 1_000_000;
        const ITEMS: u64 = 1000;
        let theta = 0.99;
        let zipfian = Zipfian::new(ITEMS, theta).unwrap();
        let eta = (1.0 - (2.0 / ITEMS as f64).powf(1.0 - theta))
            / (1.0 - zeta_direct(2, theta) / zeta_direct(ITEMS, theta));
        let mut rng = SmallRng::seed_from_u64(12);
        let ranks: Vec<u64> = (0..DRAWS).map(|_| zipfian.next(&mut rng)).collect();
        for k in [10, 100, 500] {
            let expected = 1.0 - (1.0 - (k as f64 / ITEMS as f64).powf(1.0 - theta)) / eta;
            let observed = ranks.iter().filter(|&&rank| rank < k).count() as f64 / DRAWS as f64;
            assert!(
                (observed - expected).abs() < tolerance(expected, DRAWS),
                "P(rank < {k}): {observed} vs {expected}"
            );
        }
        // The approximation stays near the exact Zipf mass: ranks 2..10 get 0.204 of the draws
        // against 0.188 under Zipf(0.99).
        let observed = ranks
            .iter()
            .filter(|&&rank| (2..10).contains(&rank))
            .count() as f64
            / DRAWS as f64;
        let exact = (zeta_direct(10, theta) - zeta_direct(2, theta)) / zeta_direct(ITEMS, theta);
        assert!(
            (observed - exact).abs() / exact < 0.1,
            "{observed} vs {exact}"
        );
    }

    #[test]
    fn scrambled_source_uses_the_constant_and_draws_rank_0_at_one_over_zetan() {
        const DRAWS: u64 = 1_000_000;
        let scrambled = ScrambledZipfian::new(1000, ZIPFIAN_THETA_YCSB).unwrap();
        assert_eq!(scrambled.source().zetan(), SCRAMBLED_ZETAN_THETA_099);
        assert_eq!(scrambled.source().items(), SCRAMBLED_SOURCE_ITEMS);
        let mut rng = SmallRng::seed_from_u64(13);
        let observed = fraction(DRAWS, || scrambled.source().next(&mut rng) == 0);
        let expected = 1.0 / SCRAMBLED_ZETAN_THETA_099;
        assert!(
            (observed - expected).abs() < tolerance(expected, DRAWS),
            "{observed} vs {expected}"
        );
    }

    #[test]
    fn scrambled_hottest_key_is_the_hash_of_rank_0() {
        const DRAWS: u64 = 1_000_000;
        const ITEMS: u64 = 1_000_000;
        let scrambled = ScrambledZipfian::new(ITEMS, ZIPFIAN_THETA_YCSB).unwrap();
        let hottest = fnvhash64(0) % ITEMS;
        let mut rng = SmallRng::seed_from_u64(14);
        let observed = fraction(DRAWS, || scrambled.next(&mut rng) == hottest);
        // Other ranks land on the same key only by collision, which adds about 1/ITEMS.
        let expected = 1.0 / SCRAMBLED_ZETAN_THETA_099;
        assert!(
            (observed - expected).abs() < tolerance(expected, DRAWS) + 1e-5,
            "{observed} vs {expected}"
        );
    }

    #[test]
    fn scrambled_other_theta_computes_zeta() {
        let scrambled = ScrambledZipfian::new(1000, 0.8).unwrap();
        // The computed source zeta agrees with the same series split at another point.
        let other_split = zeta_split(SCRAMBLED_SOURCE_ITEMS, 0.8, 8192);
        let zetan = scrambled.source().zetan();
        assert!(((zetan - other_split) / other_split).abs() < 1e-12);
        assert_ne!(zetan, SCRAMBLED_ZETAN_THETA_099);
    }

    #[test]
    fn zipfian_grows_incrementally() {
        let mut zipfian = Zipfian::new(100, 0.99).unwrap();
        zipfian.set_items(NonZeroU64::new(250).unwrap());
        let fresh = Zipfian::new(250, 0.99).unwrap();
        assert_eq!(zipfian.items(), 250);
        assert!((zipfian.zetan() - zeta_direct(250, 0.99)).abs() < 1e-12);
        assert!((zipfian.eta() - fresh.eta()).abs() < 1e-12);
        // A shrink recomputes.
        zipfian.set_items(NonZeroU64::new(10).unwrap());
        assert!((zipfian.zetan() - zeta_direct(10, 0.99)).abs() < 1e-12);
        let mut rng = SmallRng::seed_from_u64(15);
        assert!((0..10_000).all(|_| zipfian.next(&mut rng) < 10));
        // A jump far beyond the direct head recomputes with the bounded-cost zeta.
        zipfian.set_items(NonZeroU64::new(1_000_000_000).unwrap());
        assert_eq!(zipfian.zetan(), zeta(1_000_000_000, 0.99));
    }

    #[test]
    fn zipfian_rejects_bad_parameters() {
        for theta in [1.0, 1.5, -0.01, f64::NAN, f64::INFINITY] {
            assert!(
                matches!(
                    Zipfian::new(10, theta),
                    Err(WorkloadError::ThetaInvalid { .. })
                ),
                "theta {theta} accepted"
            );
            assert!(ScrambledZipfian::new(10, theta).is_err());
        }
        assert_eq!(Zipfian::new(0, 0.5).unwrap_err(), WorkloadError::ItemsZero);
        assert_eq!(
            ScrambledZipfian::new(0, 0.99).unwrap_err(),
            WorkloadError::ItemsZero
        );
        assert_eq!(
            Zipfian::with_base(u64::MAX, 2, 0.5).unwrap_err(),
            WorkloadError::BaseOverflow {
                base: u64::MAX,
                items: 2
            }
        );
    }

    #[test]
    fn zipfian_small_item_counts_stay_in_range() {
        let mut rng = SmallRng::seed_from_u64(16);
        for items in 1..=3 {
            for theta in [0.0, 0.5, 0.99] {
                let zipfian = Zipfian::new(items, theta).unwrap();
                assert!((0..10_000).all(|_| zipfian.next(&mut rng) < items));
            }
        }
        // Variates at the edges of [0, 1).
        let zipfian = Zipfian::new(2, 0.99).unwrap();
        assert_eq!(zipfian.rank_at(0.0), 0);
        assert_eq!(zipfian.rank_at(1.0 - f64::EPSILON), 1);
        let zipfian = Zipfian::new(1000, 0.99).unwrap();
        assert_eq!(zipfian.rank_at(1.0 - f64::EPSILON), 999);
    }

    #[test]
    fn zipfian_theta_0_is_uniform() {
        const DRAWS: u64 = 200_000;
        let zipfian = Zipfian::new(10, 0.0).unwrap();
        let mut rng = SmallRng::seed_from_u64(17);
        let mut counts = [0_u64; 10];
        for _ in 0..DRAWS {
            counts[zipfian.next(&mut rng) as usize] += 1;
        }
        for count in counts {
            let observed = count as f64 / DRAWS as f64;
            assert!((observed - 0.1).abs() < tolerance(0.1, DRAWS), "{counts:?}");
        }
    }

    #[test]
    fn zipfian_same_seed_same_sequence() {
        let scrambled = ScrambledZipfian::new(1_000_000, 0.99).unwrap();
        let draw = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..1000)
                .map(|_| scrambled.next(&mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    proptest! {
        #[test]
        fn zipfian_draws_stay_in_range(
            base in 0_u64..1_000_000,
            items in 1_u64..100_000,
            theta in 0.0_f64..0.999,
            seed: u64,
        ) {
            let zipfian = Zipfian::with_base(base, items, theta).unwrap();
            let scrambled = ScrambledZipfian::new(items, theta).unwrap();
            let mut rng = SmallRng::seed_from_u64(seed);
            for _ in 0..100 {
                let rank = zipfian.next(&mut rng);
                prop_assert!(rank >= base && rank < base + items);
                prop_assert!(scrambled.next(&mut rng) < items);
            }
        }
    }
}
