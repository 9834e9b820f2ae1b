//! Operations, operation mixes and the YCSB core workload presets.
//!
//! A [`WorkloadSpec`] gives the proportion of each [`Op`] and the key distribution. The presets are
//! YCSB's core workloads A, B, C, D and F with YCSB's own distributions (scrambled zipfian, and
//! latest for D); [`WorkloadSpec::with_distribution`] swaps in the exact Zipf for parity with the
//! DINOMO benchmark. Workload E needs range scans, which dinomo's hash index does not offer, so
//! asking for it is an error. Custom mixes are validated: every proportion finite and non-negative,
//! and the sum within [`PROPORTION_SUM_TOLERANCE`] of 1.
//!
//! An [`OpChooser`] draws operations in proportion to a validated spec; an operation with
//! proportion 0 is never drawn.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

use super::constants::{PROPORTION_SUM_TOLERANCE, ZIPFIAN_THETA_YCSB};
use super::distribution::KeyDistribution;
use super::error::WorkloadError;

/// One operation of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Read an existing record.
    Read,
    /// Overwrite an existing record.
    Update,
    /// Add a new record.
    Insert,
    /// Read an existing record, then overwrite it.
    ReadModifyWrite,
}

impl Op {
    /// All operations, in the order of [`WorkloadSpec`]'s fields.
    pub const ALL: [Op; 4] = [Op::Read, Op::Update, Op::Insert, Op::ReadModifyWrite];
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Read => "read",
            Op::Update => "update",
            Op::Insert => "insert",
            Op::ReadModifyWrite => "read-modify-write",
        })
    }
}

/// The YCSB core workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ycsb {
    /// 50% read, 50% update, zipfian.
    A,
    /// 95% read, 5% update, zipfian.
    B,
    /// 100% read, zipfian.
    C,
    /// 95% read, 5% insert, latest.
    D,
    /// 95% scan, 5% insert: not supported.
    E,
    /// 50% read, 50% read-modify-write, zipfian.
    F,
}

impl fmt::Display for Ycsb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ycsb::A => "a",
            Ycsb::B => "b",
            Ycsb::C => "c",
            Ycsb::D => "d",
            Ycsb::E => "e",
            Ycsb::F => "f",
        })
    }
}

impl FromStr for Ycsb {
    type Err = WorkloadError;

    /// Parses a workload letter, in either case, optionally prefixed by `workload`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lower = text.trim().to_ascii_lowercase();
        let letter = lower.strip_prefix("workload").unwrap_or(&lower);
        match letter {
            "a" => Ok(Ycsb::A),
            "b" => Ok(Ycsb::B),
            "c" => Ok(Ycsb::C),
            "d" => Ok(Ycsb::D),
            "e" => Ok(Ycsb::E),
            "f" => Ok(Ycsb::F),
            _ => Err(WorkloadError::YcsbUnknown {
                text: text.to_owned(),
            }),
        }
    }
}

/// The proportion of each operation and the key distribution of a workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkloadSpec {
    pub read: f64,
    pub update: f64,
    pub insert: f64,
    pub rmw: f64,
    pub distribution: KeyDistribution,
}

impl WorkloadSpec {
    /// The preset for a YCSB core workload. E is rejected: it needs range scans.
    pub fn ycsb(workload: Ycsb) -> Result<Self, WorkloadError> {
        let zipfian = KeyDistribution::ScrambledZipfian {
            theta: ZIPFIAN_THETA_YCSB,
        };
        let latest = KeyDistribution::Latest {
            theta: ZIPFIAN_THETA_YCSB,
        };
        let (read, update, insert, rmw, distribution) = match workload {
            Ycsb::A => (0.5, 0.5, 0.0, 0.0, zipfian),
            Ycsb::B => (0.95, 0.05, 0.0, 0.0, zipfian),
            Ycsb::C => (1.0, 0.0, 0.0, 0.0, zipfian),
            Ycsb::D => (0.95, 0.0, 0.05, 0.0, latest),
            Ycsb::E => return Err(WorkloadError::YcsbUnsupported(Ycsb::E)),
            Ycsb::F => (0.5, 0.0, 0.0, 0.5, zipfian),
        };
        Ok(Self {
            read,
            update,
            insert,
            rmw,
            distribution,
        })
    }

    /// A custom mix, validated.
    pub fn custom(
        read: f64,
        update: f64,
        insert: f64,
        rmw: f64,
        distribution: KeyDistribution,
    ) -> Result<Self, WorkloadError> {
        let spec = Self {
            read,
            update,
            insert,
            rmw,
            distribution,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// The same mix with another key distribution, validated.
    pub fn with_distribution(self, distribution: KeyDistribution) -> Result<Self, WorkloadError> {
        let spec = Self {
            distribution,
            ..self
        };
        spec.validate()?;
        Ok(spec)
    }

    /// The proportion of `op`.
    pub fn proportion(&self, op: Op) -> f64 {
        match op {
            Op::Read => self.read,
            Op::Update => self.update,
            Op::Insert => self.insert,
            Op::ReadModifyWrite => self.rmw,
        }
    }

    /// Checks that every proportion is finite and non-negative, that they sum to 1 within
    /// [`PROPORTION_SUM_TOLERANCE`], and that the distribution's θ is in range.
    pub fn validate(&self) -> Result<(), WorkloadError> {
        for op in Op::ALL {
            let proportion = self.proportion(op);
            if !(proportion.is_finite() && proportion >= 0.0) {
                return Err(WorkloadError::ProportionInvalid { op, proportion });
            }
        }
        let sum: f64 = Op::ALL.iter().map(|&op| self.proportion(op)).sum();
        if (sum - 1.0).abs() > PROPORTION_SUM_TOLERANCE {
            return Err(WorkloadError::ProportionSum { sum });
        }
        self.distribution.validate()
    }
}

impl fmt::Display for WorkloadSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read={} update={} insert={} rmw={} keys={}",
            self.read, self.update, self.insert, self.rmw, self.distribution
        )
    }
}

/// Draws operations in the proportions of a [`WorkloadSpec`].
#[derive(Debug, Clone)]
pub struct OpChooser {
    /// `(upper bound of the cumulative proportion, op)` for the ops with a non-zero proportion, in
    /// `Op::ALL` order; the last bound is 1.
    thresholds: [(f64, Op); 4],
    len: usize,
}

impl OpChooser {
    /// A chooser for `spec`, which is validated first.
    pub fn new(spec: &WorkloadSpec) -> Result<Self, WorkloadError> {
        spec.validate()?;
        let sum: f64 = Op::ALL.iter().map(|&op| spec.proportion(op)).sum();
        let mut thresholds = [(0.0, Op::Read); 4];
        let mut len = 0;
        let mut cumulative = 0.0;
        for op in Op::ALL {
            let proportion = spec.proportion(op);
            if proportion > 0.0 {
                // Normalising by the sum absorbs the tolerated deviation from 1.
                cumulative += proportion / sum;
                thresholds[len] = (cumulative, op);
                len += 1;
            }
        }
        // The last op takes whatever rounding left above its bound, so a zero-proportion op after it
        // can never be drawn.
        thresholds[len - 1].0 = 1.0;
        Ok(Self { thresholds, len })
    }

    /// Draws one operation.
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> Op {
        let u: f64 = rng.random();
        self.op_at(u)
    }

    fn op_at(&self, u: f64) -> Op {
        let active = &self.thresholds[..self.len];
        active
            .iter()
            .find(|&&(bound, _)| u < bound)
            .or(active.last())
            .map_or(Op::Read, |&(_, op)| op)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    const DRAWS: u64 = 100_000;

    fn frequencies(spec: &WorkloadSpec, seed: u64) -> HashMap<Op, f64> {
        let chooser = OpChooser::new(spec).unwrap();
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut counts: HashMap<Op, u64> = HashMap::new();
        for _ in 0..DRAWS {
            *counts.entry(chooser.next(&mut rng)).or_default() += 1;
        }
        Op::ALL
            .iter()
            .map(|&op| {
                let count = counts.get(&op).copied().unwrap_or(0);
                (op, count as f64 / DRAWS as f64)
            })
            .collect()
    }

    fn assert_within_one_percent(spec: &WorkloadSpec, seed: u64) {
        let observed = frequencies(spec, seed);
        for op in Op::ALL {
            let expected = spec.proportion(op);
            assert!(
                (observed[&op] - expected).abs() <= 0.01,
                "{spec}: {op} drawn {} of the time, spec {expected}",
                observed[&op]
            );
            if expected == 0.0 {
                assert_eq!(observed[&op], 0.0, "{spec}: {op} drawn with proportion 0");
            }
        }
    }

    #[test]
    fn ycsb_presets_have_the_documented_mixes() {
        let zipfian = KeyDistribution::ScrambledZipfian { theta: 0.99 };
        let cases = [
            (Ycsb::A, [0.5, 0.5, 0.0, 0.0], zipfian),
            (Ycsb::B, [0.95, 0.05, 0.0, 0.0], zipfian),
            (Ycsb::C, [1.0, 0.0, 0.0, 0.0], zipfian),
            (
                Ycsb::D,
                [0.95, 0.0, 0.05, 0.0],
                KeyDistribution::Latest { theta: 0.99 },
            ),
            (Ycsb::F, [0.5, 0.0, 0.0, 0.5], zipfian),
        ];
        for (workload, [read, update, insert, rmw], distribution) in cases {
            let spec = WorkloadSpec::ycsb(workload).unwrap();
            assert_eq!(
                spec,
                WorkloadSpec {
                    read,
                    update,
                    insert,
                    rmw,
                    distribution
                },
                "workload {workload}"
            );
            spec.validate().unwrap();
        }
    }

    #[test]
    fn ycsb_e_is_rejected() {
        assert_eq!(
            WorkloadSpec::ycsb(Ycsb::E).unwrap_err(),
            WorkloadError::YcsbUnsupported(Ycsb::E)
        );
        assert_eq!("E".parse::<Ycsb>(), Ok(Ycsb::E));
    }

    #[test]
    fn ycsb_letters_parse() {
        assert_eq!("a".parse::<Ycsb>(), Ok(Ycsb::A));
        assert_eq!("workloadf".parse::<Ycsb>(), Ok(Ycsb::F));
        assert_eq!(" D ".parse::<Ycsb>(), Ok(Ycsb::D));
        assert!(matches!(
            "g".parse::<Ycsb>(),
            Err(WorkloadError::YcsbUnknown { .. })
        ));
    }

    #[test]
    fn custom_mixes_are_validated() {
        let uniform = KeyDistribution::Uniform;
        assert!(WorkloadSpec::custom(0.25, 0.25, 0.25, 0.25, uniform).is_ok());
        // Within the tolerance of 1e-9.
        assert!(WorkloadSpec::custom(0.5, 0.5 + 5e-10, 0.0, 0.0, uniform).is_ok());
        assert!(matches!(
            WorkloadSpec::custom(0.5, 0.5 + 2e-9, 0.0, 0.0, uniform),
            Err(WorkloadError::ProportionSum { .. })
        ));
        assert!(matches!(
            WorkloadSpec::custom(0.5, 0.4, 0.0, 0.0, uniform),
            Err(WorkloadError::ProportionSum { .. })
        ));
        assert!(matches!(
            WorkloadSpec::custom(0.0, 0.0, 0.0, 0.0, uniform),
            Err(WorkloadError::ProportionSum { .. })
        ));
        assert_eq!(
            WorkloadSpec::custom(1.5, -0.5, 0.0, 0.0, uniform).unwrap_err(),
            WorkloadError::ProportionInvalid {
                op: Op::Update,
                proportion: -0.5
            }
        );
        for bad in [f64::NAN, f64::INFINITY] {
            assert!(matches!(
                WorkloadSpec::custom(bad, 0.0, 0.0, 0.0, uniform),
                Err(WorkloadError::ProportionInvalid { op: Op::Read, .. })
            ));
        }
        assert!(matches!(
            WorkloadSpec::custom(1.0, 0.0, 0.0, 0.0, KeyDistribution::Latest { theta: 2.0 }),
            Err(WorkloadError::ThetaInvalid { .. })
        ));
        // A spec built field by field is checked when a chooser is made from it.
        let bad = WorkloadSpec {
            read: 0.7,
            update: 0.7,
            insert: 0.0,
            rmw: 0.0,
            distribution: uniform,
        };
        assert!(OpChooser::new(&bad).is_err());
    }

    #[test]
    fn ycsb_mix_proportions_within_one_percent() {
        for (seed, workload) in [Ycsb::A, Ycsb::B, Ycsb::C, Ycsb::D, Ycsb::F]
            .into_iter()
            .enumerate()
        {
            assert_within_one_percent(&WorkloadSpec::ycsb(workload).unwrap(), seed as u64);
        }
    }

    #[test]
    fn custom_mix_proportions_within_one_percent() {
        let spec = WorkloadSpec::custom(0.1, 0.2, 0.3, 0.4, KeyDistribution::Uniform).unwrap();
        assert_within_one_percent(&spec, 41);
        let spec = WorkloadSpec::custom(0.0, 0.0, 1.0, 0.0, KeyDistribution::Uniform).unwrap();
        assert_within_one_percent(&spec, 42);
    }

    #[test]
    fn op_chooser_bounds_follow_the_cumulative_proportions() {
        let spec = WorkloadSpec::custom(0.5, 0.0, 0.25, 0.25, KeyDistribution::Uniform).unwrap();
        let chooser = OpChooser::new(&spec).unwrap();
        assert_eq!(chooser.op_at(0.0), Op::Read);
        assert_eq!(chooser.op_at(0.4999), Op::Read);
        assert_eq!(chooser.op_at(0.5), Op::Insert);
        assert_eq!(chooser.op_at(0.7499), Op::Insert);
        assert_eq!(chooser.op_at(0.75), Op::ReadModifyWrite);
        assert_eq!(chooser.op_at(1.0 - f64::EPSILON), Op::ReadModifyWrite);
        assert_eq!(chooser.op_at(1.0), Op::ReadModifyWrite);
    }

    #[test]
    fn op_chooser_same_seed_same_sequence() {
        let chooser = OpChooser::new(&WorkloadSpec::ycsb(Ycsb::A).unwrap()).unwrap();
        let draw = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..1000)
                .map(|_| chooser.next(&mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }

    #[test]
    fn spec_display_names_the_mix_and_distribution() {
        let spec = WorkloadSpec::ycsb(Ycsb::D).unwrap();
        assert_eq!(
            spec.to_string(),
            "read=0.95 update=0 insert=0.05 rmw=0 keys=latest(0.99)"
        );
        let exact = WorkloadSpec::ycsb(Ycsb::A)
            .unwrap()
            .with_distribution(KeyDistribution::ZipfExact { theta: 0.99 })
            .unwrap();
        assert_eq!(exact.distribution.to_string(), "zipf-exact(0.99)");
        assert_eq!(exact.update, 0.5);
    }
}
