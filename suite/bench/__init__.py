"""Benchmarks: loss kernels (`suite bench kernel`) and training steps (`suite bench step`).

Records are written in the `bench_kernel` / `bench_step` format of docs/records.md; the CI guard
(tests/test_bench_guard.py) compares ratios measured in one run with `baselines/bench_limits.json`.
"""
