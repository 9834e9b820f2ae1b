//! The `local` fabric: verbs executed on the pool mapping in this process.
