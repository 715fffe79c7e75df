//! Placeholder; the benchmark harness issue fills this in.
fn main() {}
