"""The speed suite's measurements, one module per thing measured (``benchmarks.suites.speed`` runs them)."""
