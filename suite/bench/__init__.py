"""Benchmarks: loss kernels (`suite bench kernel`) and training steps (`suite bench step`).

Records are written in the `bench_kernel` / `bench_step` format of docs/records.md; the CI guard
(`suite bench guard`, tests/test_bench_guard.py) times every loss beside the same loss at the
reference commit of `baselines/speed_guard.json`, in one run.
"""
