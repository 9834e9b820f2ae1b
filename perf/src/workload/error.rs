//! The one error type of the workload generators.
//!
//! Every invalid parameter (an empty key space, a theta out of range, a mix that does not sum to 1,
//! an unsupported YCSB workload) is reported as a `WorkloadError` value; no generator panics on
//! parameters it was given.

use super::mix::{Op, Ycsb};

/// Why a generator, a mix or a workload could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkloadError {
    /// A key space, or a workload, has no records to choose from.
    #[error("a key space needs at least one item")]
    ItemsZero,
    /// The exact Zipf table would exceed its size limit.
    #[error("exact zipf over {items} items exceeds the limit of {items_max} items (8 bytes each)")]
    ItemsTooMany { items: u64, items_max: u64 },
    /// The exact Zipf table could not be allocated.
    #[error("could not allocate the {table_bytes}-byte exact zipf table")]
    TableAllocation { table_bytes: u64 },
    /// A skew parameter is NaN, infinite or outside the range the generator supports.
    #[error("theta {theta} is outside {range} for {generator}")]
    ThetaInvalid {
        generator: &'static str,
        theta: f64,
        range: &'static str,
    },
    /// The first key plus the item count does not fit in a `u64`.
    #[error("a key range starting at {base} with {items} items overflows u64")]
    BaseOverflow { base: u64, items: u64 },
    /// A chooser was given a key space capacity smaller than its record count.
    #[error("key space capacity {capacity} is below the record count {records}")]
    CapacityBelowRecords { capacity: u64, records: u64 },
    /// The YCSB workload needs an operation dinomo's hash index does not offer.
    #[error("YCSB workload {0} is not supported: it needs range scans, which a hash index lacks")]
    YcsbUnsupported(Ycsb),
    /// The text does not name a YCSB core workload.
    #[error("{text:?} does not name a YCSB core workload (a to f)")]
    YcsbUnknown { text: String },
    /// An operation's proportion is negative, NaN or infinite.
    #[error("the proportion of {op} is {proportion}; it must be finite and non-negative")]
    ProportionInvalid { op: Op, proportion: f64 },
    /// The proportions of a mix do not add up to 1.
    #[error("the operation proportions sum to {sum}, not 1")]
    ProportionSum { sum: f64 },
    /// A value size exceeds the value generator's limit.
    #[error("value size {value_bytes} bytes exceeds the limit of {value_bytes_max} bytes")]
    ValueTooLarge {
        value_bytes: usize,
        value_bytes_max: usize,
    },
    /// The text does not name a key distribution.
    #[error("{text:?} does not name a key distribution")]
    DistributionUnknown { text: String },
    /// A load-phase partition was asked for with a part outside `0..parts`.
    #[error("load part {part} does not exist among {parts} parts")]
    LoadPartInvalid { part: u64, parts: u64 },
}
