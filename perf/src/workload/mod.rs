//! Key and operation generators for YCSB-style workloads.
