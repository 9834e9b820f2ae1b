//! Key and operation generators for YCSB-style workloads.
//!
//! A [`Workload`] ties the parts together: it loads the records `0..records` (the load phase), then
//! draws `(Op, record index)` pairs in the proportions of a [`WorkloadSpec`] with keys from a
//! [`KeyDistribution`] (the run phase). Inserts take fresh indices `records, records + 1, ...` in
//! order, and the key distribution is told about each one, so `latest` follows the newest record.
//! Key names and values are derived from indices ([`key_name`], [`ValueGenerator`]).
//!
//! The generators:
//! - [`zipf`]: the exact Zipf(θ) sampler of the DINOMO benchmark (CDF table, binary search).
//! - [`scrambled`]: YCSB's Gray-method Zipfian, its scrambled form and `fnvhash64`.
//! - [`latest`]: YCSB's skewed-latest (Zipfian over recency).
//! - [`distribution`]: the named distributions and the key chooser over them.
//! - [`mix`]: operations, mixes and the YCSB presets A, B, C, D, F.
//! - [`keys`]: key names and values.
//!
//! Everything is deterministic given a seed: the same seed gives the same keys, operations and
//! values on every run and every machine. A `Workload` is one stream of operations. Clients that
//! only read and update can each run a clone with its own [`Workload::rng`] stream; a workload that
//! inserts hands out its new indices from one counter, so its inserts come from a single stream.

pub mod constants;
pub mod distribution;
pub mod error;
pub mod keys;
pub mod latest;
pub mod mix;
pub mod scrambled;
pub mod zipf;

#[cfg(test)]
mod testing;

use std::ops::Range;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub use distribution::{KeyChooser, KeyDistribution};
pub use error::WorkloadError;
pub use keys::{KeyOrder, ValueGenerator, key_id, key_name, write_key_name};
pub use latest::SkewedLatest;
pub use mix::{Op, OpChooser, WorkloadSpec, Ycsb};
pub use scrambled::{ScrambledZipfian, Zipfian, fnvhash64, zeta};
pub use zipf::ZipfExact;

/// The parameters of a [`Workload`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkloadConfig {
    /// Records loaded before the run, indices `0..records`.
    pub records: u64,
    /// Operation mix and key distribution.
    pub spec: WorkloadSpec,
    /// How record indices become key names.
    pub key_order: KeyOrder,
    /// The size of every value.
    pub value_bytes: usize,
    /// The seed of every random stream of the workload.
    pub seed: u64,
    /// Inserts the run is expected to make. The fixed-space distributions (`zipf-exact`,
    /// `scrambled-zipfian`) span `records + inserts_expected` keys so that inserted records can be
    /// read too; with 0 they span the loaded records only. `uniform` and `latest` ignore it.
    pub inserts_expected: u64,
}

impl WorkloadConfig {
    /// A configuration with YCSB's hashed keys, DINOMO's 1006-byte values, seed 0 and no expected
    /// inserts.
    pub fn new(records: u64, spec: WorkloadSpec) -> Self {
        Self {
            records,
            spec,
            key_order: KeyOrder::Hashed,
            value_bytes: 1006,
            seed: 0,
            inserts_expected: 0,
        }
    }
}

/// One reproducible stream of load and run operations.
#[derive(Debug, Clone)]
pub struct Workload {
    config: WorkloadConfig,
    keys: KeyChooser,
    ops: OpChooser,
    values: ValueGenerator,
    /// Records inserted by the run so far; the next insert takes index `records + inserted`.
    inserted: u64,
}

impl Workload {
    /// Builds the generators for `config`, validating every parameter.
    pub fn new(config: WorkloadConfig) -> Result<Self, WorkloadError> {
        if config.records == 0 {
            return Err(WorkloadError::ItemsZero);
        }
        let ops = OpChooser::new(&config.spec)?;
        let capacity = config.records.saturating_add(config.inserts_expected);
        let keys = KeyChooser::with_capacity(config.spec.distribution, config.records, capacity)?;
        let values = ValueGenerator::new(config.value_bytes, config.seed)?;
        Ok(Self {
            config,
            keys,
            ops,
            values,
            inserted: 0,
        })
    }

    /// The configuration the workload was built from.
    pub fn config(&self) -> &WorkloadConfig {
        &self.config
    }

    /// The operation mix and key distribution.
    pub fn spec(&self) -> &WorkloadSpec {
        &self.config.spec
    }

    /// The number of records loaded before the run.
    pub fn records_loaded(&self) -> u64 {
        self.config.records
    }

    /// The number of records inserted by the run so far.
    pub fn records_inserted(&self) -> u64 {
        self.inserted
    }

    /// The number of records that exist now: loaded plus inserted.
    pub fn records(&self) -> u64 {
        self.keys.count()
    }

    /// The record indices of the load phase.
    pub fn load_keys(&self) -> Range<u64> {
        0..self.config.records
    }

    /// Part `part` of `parts` near-equal, disjoint, consecutive slices of the load phase, for
    /// loading with several clients.
    pub fn load_keys_part(&self, part: u64, parts: u64) -> Result<Range<u64>, WorkloadError> {
        if part >= parts {
            return Err(WorkloadError::LoadPartInvalid { part, parts });
        }
        let records = u128::from(self.config.records);
        let bound = |part: u64| (records * u128::from(part) / u128::from(parts)) as u64;
        Ok(bound(part)..bound(part + 1))
    }

    /// A random stream derived from the workload's seed; distinct `stream` numbers give independent
    /// streams (one per client thread, or one for the load and one for the run).
    pub fn rng(&self, stream: u64) -> SmallRng {
        // Stream numbers are spread by the golden-ratio increment so that streams 0, 1, 2, ... seed
        // unrelated generators.
        let seed = self
            .config
            .seed
            .wrapping_add(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        SmallRng::seed_from_u64(seed)
    }

    /// Draws the next run-phase operation and the record it acts on. An insert takes the next fresh
    /// index, after which the key distribution counts the new record as existing.
    pub fn next_op<R: Rng + ?Sized>(&mut self, rng: &mut R) -> (Op, u64) {
        let op = self.ops.next(rng);
        let index = match op {
            Op::Insert => {
                let index = self.config.records.saturating_add(self.inserted);
                self.inserted = self.inserted.saturating_add(1);
                self.keys.record_inserted();
                index
            }
            Op::Read | Op::Update | Op::ReadModifyWrite => self.keys.next(rng),
        };
        (op, index)
    }

    /// The key name of record `index`.
    pub fn key_name(&self, index: u64) -> Vec<u8> {
        key_name(index, self.config.key_order)
    }

    /// The value of record `index` at `version`.
    pub fn value(&self, index: u64, version: u64) -> Vec<u8> {
        self.values.value(index, version)
    }

    /// The value generator, for filling reused buffers and checking values read back.
    pub fn values(&self) -> &ValueGenerator {
        &self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(spec: WorkloadSpec, seed: u64) -> Workload {
        Workload::new(WorkloadConfig {
            seed,
            ..WorkloadConfig::new(1000, spec)
        })
        .unwrap()
    }

    fn run(workload: &mut Workload, stream: u64, ops: usize) -> Vec<(Op, u64)> {
        let mut rng = workload.rng(stream);
        (0..ops).map(|_| workload.next_op(&mut rng)).collect()
    }

    #[test]
    fn same_seed_same_sequence() {
        for letter in [Ycsb::A, Ycsb::B, Ycsb::C, Ycsb::D, Ycsb::F] {
            let spec = WorkloadSpec::ycsb(letter).unwrap();
            let first = run(&mut workload(spec, 61), 0, 5000);
            let second = run(&mut workload(spec, 61), 0, 5000);
            assert_eq!(first, second, "workload {letter}");
            let other_seed = run(&mut workload(spec, 62), 0, 5000);
            assert_ne!(first, other_seed, "workload {letter}");
            let other_stream = run(&mut workload(spec, 61), 1, 5000);
            assert_ne!(first, other_stream, "workload {letter}");
        }
        let exact = WorkloadSpec::ycsb(Ycsb::A)
            .unwrap()
            .with_distribution(KeyDistribution::ZipfExact { theta: 0.99 })
            .unwrap();
        assert_eq!(
            run(&mut workload(exact, 63), 0, 5000),
            run(&mut workload(exact, 63), 0, 5000)
        );
        let a = workload(exact, 64);
        assert_eq!(a.value(5, 2), workload(exact, 64).value(5, 2));
        assert_eq!(a.key_name(5), workload(exact, 64).key_name(5));
    }

    #[test]
    fn workload_d_inserts_extend_the_key_space() {
        let mut workload = workload(WorkloadSpec::ycsb(Ycsb::D).unwrap(), 65);
        let ops = run(&mut workload, 0, 20_000);
        let inserts: Vec<u64> = ops
            .iter()
            .filter(|(op, _)| *op == Op::Insert)
            .map(|&(_, index)| index)
            .collect();
        // New records take consecutive indices after the loaded ones.
        assert!(!inserts.is_empty());
        assert!(
            inserts
                .iter()
                .copied()
                .eq(1000..1000 + inserts.len() as u64)
        );
        assert_eq!(workload.records_inserted(), inserts.len() as u64);
        assert_eq!(workload.records(), 1000 + inserts.len() as u64);
        // Every read names a record that existed when it was drawn.
        let mut existing = 1000;
        for &(op, index) in &ops {
            match op {
                Op::Insert => existing += 1,
                _ => assert!(index < existing, "{op} of {index} with {existing} records"),
            }
        }
        // Reads favour the newest records: over the last quarter of the run, most reads land on
        // records inserted during the run.
        let tail = &ops[15_000..];
        let reads = tail.iter().filter(|(op, _)| *op == Op::Read).count();
        let fresh = tail
            .iter()
            .filter(|&&(op, index)| op == Op::Read && index >= 1000)
            .count();
        assert!(
            fresh * 2 > reads,
            "{fresh} of {reads} reads on inserted records"
        );
    }

    #[test]
    fn inserts_expected_make_inserted_records_readable_under_zipf() {
        let spec = WorkloadSpec::custom(
            0.5,
            0.0,
            0.5,
            0.0,
            KeyDistribution::ZipfExact { theta: 0.5 },
        )
        .unwrap();
        let config = WorkloadConfig {
            inserts_expected: 2000,
            ..WorkloadConfig::new(1000, spec)
        };
        let mut workload = Workload::new(config).unwrap();
        let ops = run(&mut workload, 0, 4000);
        assert!(
            ops.iter()
                .any(|&(op, index)| op == Op::Read && index >= 1000)
        );
        let mut existing = 1000;
        for &(op, index) in &ops {
            match op {
                Op::Insert => existing += 1,
                _ => assert!(index < existing),
            }
        }
    }

    #[test]
    fn run_mix_follows_the_spec() {
        let mut workload = workload(WorkloadSpec::ycsb(Ycsb::F).unwrap(), 66);
        let ops = run(&mut workload, 0, 100_000);
        let rmw = ops
            .iter()
            .filter(|(op, _)| *op == Op::ReadModifyWrite)
            .count();
        assert!((rmw as f64 / 100_000.0 - 0.5).abs() <= 0.01);
        assert!(
            ops.iter().all(|&(op, index)| {
                matches!(op, Op::Read | Op::ReadModifyWrite) && index < 1000
            })
        );
    }

    #[test]
    fn load_keys_cover_the_records_once() {
        let workload = workload(WorkloadSpec::ycsb(Ycsb::C).unwrap(), 67);
        assert_eq!(workload.load_keys(), 0..1000);
        for parts in [1, 3, 7, 1000, 1500] {
            let mut next = 0;
            for part in 0..parts {
                let range = workload.load_keys_part(part, parts).unwrap();
                assert_eq!(range.start, next);
                next = range.end;
            }
            assert_eq!(next, 1000);
        }
        assert_eq!(
            workload.load_keys_part(3, 3).unwrap_err(),
            WorkloadError::LoadPartInvalid { part: 3, parts: 3 }
        );
        assert!(workload.load_keys_part(0, 0).is_err());
    }

    #[test]
    fn workload_rejects_bad_configurations() {
        let spec = WorkloadSpec::ycsb(Ycsb::A).unwrap();
        assert_eq!(
            Workload::new(WorkloadConfig::new(0, spec)).unwrap_err(),
            WorkloadError::ItemsZero
        );
        let config = WorkloadConfig {
            value_bytes: constants::VALUE_BYTES_MAX + 1,
            ..WorkloadConfig::new(10, spec)
        };
        assert!(matches!(
            Workload::new(config),
            Err(WorkloadError::ValueTooLarge { .. })
        ));
        let bad_mix = WorkloadSpec { read: 0.9, ..spec };
        assert!(matches!(
            Workload::new(WorkloadConfig::new(10, bad_mix)),
            Err(WorkloadError::ProportionSum { .. })
        ));
        let too_big = WorkloadSpec {
            distribution: KeyDistribution::ZipfExact { theta: 0.99 },
            ..spec
        };
        assert!(matches!(
            Workload::new(WorkloadConfig::new(
                constants::ZIPF_EXACT_ITEMS_MAX + 1,
                too_big
            )),
            Err(WorkloadError::ItemsTooMany { .. })
        ));
    }
}
