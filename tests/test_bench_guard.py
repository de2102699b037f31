"""CI regression guard for the loss speed, and the per-loss pytest-benchmark timings.

The guard times every loss beside F.cross_entropy, the memory floor and the official Seesaw in one
interleaved run at LVIS shape and checks the ratios against baselines/bench_limits.json; a second
test makes Seesaw slower on purpose and expects the guard to catch it. The pytest-benchmark tests
record absolute times per loss: compare them only against a run saved on the same machine
(`pytest tests/test_bench_guard.py --benchmark-autosave`, later `--benchmark-compare`).
"""

import pytest
import torch

from suite.bench.guard import limit_violations, load_limits
from suite.bench.kernel import build_kernel, run_kernel_bench
from suite.losses.seesaw import SeesawLoss

LIMITS = load_limits()
SHAPE = LIMITS["shape"]
GUARD_ROWS = ("ce", "focal", "eql", "seesaw", "torch_cross_entropy", "memory_floor", "seesaw_official")


def measure(rows=GUARD_ROWS, quick=False):
    assert SHAPE["num_rois"] % 512 == 0
    return run_kernel_bench(SHAPE["device"], quick, rows=rows, images=(SHAPE["num_rois"] // 512,),
                            classes=(SHAPE["num_classes"],), dtypes=(SHAPE["dtype"],))


def test_loss_speed_ratios_within_limits():
    records = measure()
    violations = limit_violations(records, LIMITS)
    table = "\n".join(f"{r['name']:20s} {r['median_ms']:8.2f} ms  to CE {r['ratio_to_ce']:.2f}  "
                      f"to floor {r['ratio_to_floor']:.1f}  to official {r['ratio_to_official']:.2f}" for r in records)
    assert not violations, "loss speed regressed:\n" + "\n".join(violations) + "\nmeasured:\n" + table


def test_guard_fails_when_seesaw_is_made_slower(monkeypatch):
    fast_terms = SeesawLoss._terms

    def slow_terms(self, logits, labels):  # the same value, computed four times
        runs = [fast_terms(self, logits, labels) for _ in range(4)]
        return {name: sum(run[name] for run in runs) / 4 for name in runs[0]}

    monkeypatch.setattr(SeesawLoss, "_terms", slow_terms)
    records = measure(rows=("seesaw", "torch_cross_entropy", "memory_floor", "seesaw_official"), quick=True)
    violations = limit_violations(records, LIMITS)
    assert any(line.startswith("seesaw: ratio_to_ce") for line in violations), violations
    # The rows not measured here are reported as such, not passed silently.
    assert "focal: ratio_to_ce not measured" in violations


def test_limits_cover_every_loss():
    from suite.losses import LOSSES

    assert set(LIMITS["max_ratio"]["ratio_to_ce"]) == set(LOSSES)


@pytest.mark.parametrize("name", GUARD_ROWS)
def test_kernel_benchmark(benchmark, name):
    kernel = build_kernel(name, SHAPE["num_rois"], SHAPE["num_classes"], SHAPE["dtype"], SHAPE["device"])
    benchmark.group = f"loss kernel {SHAPE['num_rois']}x{SHAPE['num_classes']} {SHAPE['dtype']} {SHAPE['device']}"
    benchmark.pedantic(kernel, rounds=5, warmup_rounds=1, iterations=1)
