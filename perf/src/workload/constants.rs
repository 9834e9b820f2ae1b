//! Named limits of the workload generators.
//!
//! Every bound that a caller can run into (a table size, a value size, a retry count) lives here, so
//! that the limits are read in one place and their relations are checked when the crate compiles.

/// The largest key space the exact Zipf sampler accepts. Its CDF table costs 8 bytes per item, so
/// this limit caps the table at 2 GiB, which still fits on the 24 GiB development machines next to
/// the store under test.
pub const ZIPF_EXACT_ITEMS_MAX: u64 = 1 << 28;

/// The skew YCSB's core workloads use for `zipfian` and `latest`.
pub const ZIPFIAN_THETA_YCSB: f64 = 0.99;

/// The number of ranks the scrambled zipfian generator draws from before it hashes a rank onto the
/// key space. A source space far larger than any key space keeps the hashed ranks spread evenly.
pub const SCRAMBLED_SOURCE_ITEMS: u64 = 10_000_000_000;

/// zeta(`SCRAMBLED_SOURCE_ITEMS`, 0.99), the constant YCSB ships so that its default scrambled
/// zipfian does not sum ten billion terms at start-up.
pub const SCRAMBLED_ZETAN_THETA_099: f64 = 26.469_028_201_783_02;

/// How many leading terms of zeta(n, θ) are summed one by one; the rest of a longer series is
/// evaluated with the Euler–Maclaurin formula, whose omitted terms are negligible (below 1e-20)
/// only when the tail starts this far out.
pub const ZETA_DIRECT_TERMS: u64 = 1 << 16;

/// How often a key chooser redraws a rank that names a record not inserted yet before it folds the
/// rank into the current count. With the capacities that workloads ask for (at most twice the record
/// count) the fallback is practically never taken; the bound only keeps `next` from looping.
pub const KEY_REDRAW_ATTEMPTS_MAX: u32 = 64;

/// The largest value the value generator produces.
pub const VALUE_BYTES_MAX: usize = 16 << 20;

/// How far the proportions of a custom operation mix may sum away from 1.
pub const PROPORTION_SUM_TOLERANCE: f64 = 1e-9;

// The exact Zipf table must be addressable on the 64-bit targets dinomo runs on.
const _: () = assert!((ZIPF_EXACT_ITEMS_MAX as u128) * 8 <= isize::MAX as u128);
// The Euler–Maclaurin tail is accurate to double precision only from a few thousand terms on.
const _: () = assert!(ZETA_DIRECT_TERMS >= 4096);
const _: () = assert!(KEY_REDRAW_ATTEMPTS_MAX >= 1);
