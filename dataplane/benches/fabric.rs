//! Fabric benchmarks (filled in next).

fn main() {}
