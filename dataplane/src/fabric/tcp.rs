//! The `tcp` fabric: a verbs server on the memory node and one connection per queue pair.
