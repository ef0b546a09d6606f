//! rvs benchmarks live in `benches/`.
