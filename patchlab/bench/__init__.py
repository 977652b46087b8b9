"""Side-by-side benchmarks against peer libraries and reference implementations."""
