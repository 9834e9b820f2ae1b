//! Workload generators, the `dinomo-bench` load driver and the benchmark reports of dinomo.

pub mod workload;
