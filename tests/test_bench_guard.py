"""CI regression guard for the loss speed, and the per-loss pytest-benchmark timings.

The guard times every loss beside F.cross_entropy, the memory floor and the official Seesaw at LVIS
shape (each row's smallest median over interleaved blocks, suite.bench.guard) and checks the ratios
against baselines/bench_limits.json; further tests make Seesaw slower on purpose and expect the
guard to catch it, also beside a competing process. The pytest-benchmark tests record absolute
times per loss: compare them only against a run saved on the same machine
(`pytest tests/test_bench_guard.py --benchmark-autosave`, later `--benchmark-compare`).
"""

import pytest

from suite.bench.contention import competing_process
from suite.bench.guard import GUARD_ROWS, guard_table, limit_violations, load_limits, measure_guard, slower
from suite.bench.kernel import build_kernel
from suite.losses.seesaw import SeesawLoss

LIMITS = load_limits()
SHAPE = LIMITS["shape"]
SEESAW_ROWS = ("seesaw", "torch_cross_entropy", "memory_floor", "seesaw_official")


def test_loss_speed_ratios_within_limits():
    records = measure_guard(LIMITS)
    violations = limit_violations(records, LIMITS)
    assert not violations, "loss speed regressed:\n" + "\n".join(violations) + "\nmeasured:\n" + guard_table(records)


def test_guard_fails_when_seesaw_is_made_slower(monkeypatch):
    fast_terms = SeesawLoss._terms

    def slow_terms(self, logits, labels):  # the same value, computed four times
        runs = [fast_terms(self, logits, labels) for _ in range(4)]
        return {name: sum(run[name] for run in runs) / 4 for name in runs[0]}

    monkeypatch.setattr(SeesawLoss, "_terms", slow_terms)
    records = measure_guard(LIMITS, rows=SEESAW_ROWS, blocks=1)
    violations = limit_violations(records, LIMITS)
    assert any(line.startswith("seesaw: ratio_to") for line in violations), violations
    # The rows not measured here are reported as such, not passed silently.
    assert "focal: ratio_to_ce not measured" in violations


@pytest.mark.parametrize("contended", [False, True], ids=["quiet", "contended"])
def test_guard_fails_on_a_seesaw_twice_as_slow(contended):
    seesaw = build_kernel("seesaw", SHAPE["num_rois"], SHAPE["num_classes"], SHAPE["dtype"], SHAPE["device"])
    records = measure_guard(LIMITS, rows=SEESAW_ROWS, contended=contended, replace={"seesaw": slower(seesaw, 2)})
    assert all(record["contended"] == contended for record in records)
    violations = [line for line in limit_violations(records, LIMITS) if line.startswith("seesaw:")]
    assert violations, "a Seesaw twice as slow passed:\n" + guard_table(records)


def test_competing_process_is_stopped_on_error():
    with pytest.raises(KeyboardInterrupt):
        with competing_process() as process:
            assert process.poll() is None  # it runs inside the block
            raise KeyboardInterrupt
    assert process.poll() is not None


def test_limits_cover_every_loss():
    from suite.losses import LOSSES

    assert set(LIMITS["max_ratio"]["ratio_to_ce"]) == set(LOSSES)


@pytest.mark.parametrize("name", GUARD_ROWS)
def test_kernel_benchmark(benchmark, name):
    kernel = build_kernel(name, SHAPE["num_rois"], SHAPE["num_classes"], SHAPE["dtype"], SHAPE["device"])
    benchmark.group = f"loss kernel {SHAPE['num_rois']}x{SHAPE['num_classes']} {SHAPE['dtype']} {SHAPE['device']}"
    benchmark.pedantic(kernel, rounds=5, warmup_rounds=1, iterations=1)
