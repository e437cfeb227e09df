//! A local simulator of the Gcore IAM clients API (tests, demo, benchmarks).
