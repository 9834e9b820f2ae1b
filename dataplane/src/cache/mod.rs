//! Per-core disaggregated adaptive cache (DAC): values and shortcuts in one byte budget.
