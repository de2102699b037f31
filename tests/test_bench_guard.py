"""The CI speed guard (suite.bench.guard) and the per-loss pytest-benchmark timings.

The guard times every loss beside its reference at LVIS shape and checks the ratios against the
limits that `suite bench guard --derive` wrote to baselines/bench_limits.json: correct code must
pass, quiet and beside a competing process, and every loss made twice as slow (its own `_terms`
doing the work twice) must fail, in both conditions. The derivation and the stale-limit check are
tested on made-up measurements. Tests that time are marked `timing`: scripts/test.sh runs them
after the others, alone on the machine. The pytest-benchmark tests record absolute times per loss:
compare them only against a run saved on the same machine
(`pytest tests/test_bench_guard.py --benchmark-autosave`, later `--benchmark-compare`).
"""

import json
import math

import pytest

from suite.bench.contention import competing_process
from suite.bench.guard import (CONDITIONS, DERIVE_COMMAND, GUARD_LOSSES, LIMITS_FILE, MIN_MARGIN, guard_rows,
                               guard_table, limit_for, limit_violations, limits_from_measurements, load_limits,
                               losses_doing_more_work, machine, measure_guard, write_limits)
from suite.bench.kernel import REFERENCE_ROWS, build_kernel
from suite.losses import LOSSES, build_loss

LIMITS = load_limits()
SHAPE = LIMITS["shape"]


def _record_ratios(record_property, kind, condition, records, losses=GUARD_LOSSES):
    """The measured ratios as junit properties (scripts/guard_demo.py tabulates them)."""
    ratios = {record["name"]: record[LIMITS["field"]] for record in records if record["name"] in losses}
    for name, value in (("kind", kind), ("condition", condition), ("measured", json.dumps(ratios))):
        record_property(name, value)


def _explain(records):
    return "measured:\n" + guard_table(records)


@pytest.fixture(scope="module", params=CONDITIONS)
def slowed_measurement(request):
    """(condition, records) of one guard measurement with every loss computing its terms twice."""
    with losses_doing_more_work(GUARD_LOSSES, times=2):
        return request.param, measure_guard(guard_rows(LIMITS), contended=request.param == "contended", shape=SHAPE)


@pytest.mark.timing
@pytest.mark.parametrize("condition", CONDITIONS)
def test_loss_speed_ratios_within_limits(record_property, condition):
    records = measure_guard(guard_rows(LIMITS), contended=condition == "contended", shape=SHAPE)
    _record_ratios(record_property, "as_is", condition, records)
    assert all(record["contended"] == (condition == "contended") for record in records)
    violations = limit_violations(records, LIMITS, condition)
    assert not violations, "loss speed guard failed:\n" + "\n".join(violations) + "\n" + _explain(records)


@pytest.mark.timing
@pytest.mark.parametrize("loss", GUARD_LOSSES)
def test_guard_catches_a_loss_twice_as_slow(record_property, slowed_measurement, loss):
    condition, records = slowed_measurement
    _record_ratios(record_property, "slowed", condition, records, losses=(loss,))
    caught = [line for line in limit_violations(records, LIMITS, condition)
              if line.startswith(f"{loss} ({condition}): {LIMITS['field']} = ")]
    assert caught, f"{loss} twice as slow passed the guard ({condition}):\n" + _explain(records)


def test_a_slowed_loss_computes_its_terms_twice_for_the_same_values_and_gradient():
    import torch

    focal = LOSSES["focal"]
    loss = build_loss("focal", 5)
    logits = torch.randn(12, loss.num_logits, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 4, 5] * 2)
    expected = loss(logits, labels)["loss_cls"]
    original, calls = focal._terms, []

    def counted(self, logits, labels):
        calls.append(1)
        return original(self, logits, labels)

    focal._terms = counted
    try:
        with losses_doing_more_work(["focal"]):
            slowed = loss(logits, labels)["loss_cls"]
        assert focal._terms is counted  # put back on leaving the block
    finally:
        focal._terms = original
    assert len(calls) == 2
    assert torch.allclose(slowed, expected)
    assert torch.allclose(torch.autograd.grad(slowed, logits)[0], torch.autograd.grad(expected, logits)[0])
    with pytest.raises(ValueError, match="unknown losses"):
        with losses_doing_more_work(["softmax"]):
            pass


def _records(ratios, field="ratio_to_ce"):
    """Kernel records of the limits' shape with the given {name: ratio}."""
    return [dict(SHAPE, name=name, median_ms=10.0 * ratio, **{field: ratio}) for name, ratio in ratios.items()]


def _limits(row_limits, condition="quiet"):
    return dict(LIMITS, field="ratio_to_ce",
                conditions={condition: {name: {"limit": limit} for name, limit in row_limits.items()}})


def test_a_limit_is_exceeded_missing_or_stale():
    limits = _limits({"ce": 1.4, "seesaw": 1.2, "focal": 5.0, "eql": 4.0})
    lines = limit_violations(_records({"ce": 1.0, "seesaw": 1.3, "focal": 2.4}), limits, "quiet")
    assert lines == [
        "eql (quiet): ratio_to_ce not measured",
        f"limits for focal (quiet) are stale: measured 2.40, limit 5.00 (a 2x regression would pass); "
        f"re-derive with `{DERIVE_COMMAND}`",
        "seesaw (quiet): ratio_to_ce = 1.30 > limit 1.20",
    ]
    assert limit_violations(_records({"ce": 0.71, "seesaw": 1.2, "focal": 2.6, "eql": 3.9}), limits, "quiet") == []
    with pytest.raises(ValueError, match="no limits for condition 'busy'"):
        limit_violations([], limits, "busy")


def test_limit_sits_at_the_same_margin_above_the_worst_and_below_twice_the_best():
    row = limit_for([0.9, 1.0, 0.95])
    assert row["limit"] == pytest.approx(math.sqrt(2 * 0.9 * 1.0))
    assert row["limit"] / 1.0 == pytest.approx(row["margin"]) == pytest.approx(2 * 0.9 / row["limit"])
    for ratio in (0.9, 1.0):  # every measured ratio passes, and twice it fails
        assert ratio < row["limit"] < 2 * ratio


def _measurement(ratio_to_ce, floor_noise, seed):
    """One run's records: every loss at ratio_to_ce[loss] times CE, the floor moving by floor_noise."""
    import random

    rng = random.Random(seed)
    ce_ms, floor_ms = 10.0, 2.0 * (1 + floor_noise * rng.random())
    records = [{"name": "torch_cross_entropy", "median_ms": ce_ms, "ratio_to_ce": 1.0, "ratio_to_floor": ce_ms / floor_ms},
               {"name": "memory_floor", "median_ms": floor_ms, "ratio_to_ce": floor_ms / ce_ms, "ratio_to_floor": 1.0}]
    for loss, ratio in ratio_to_ce.items():
        ms = ce_ms * ratio * (1 + 0.02 * rng.random())
        records.append({"name": loss, "median_ms": ms, "ratio_to_ce": ms / ce_ms, "ratio_to_floor": ms / floor_ms})
    return records


def test_derivation_holds_the_steadiest_reference_and_refuses_noisy_rows():
    losses = ("ce", "seesaw")
    runs = {condition: [_measurement({"ce": 1.0, "seesaw": 0.9}, floor_noise=0.5, seed=seed + 10 * index)
                        for seed in range(5)]
            for index, condition in enumerate(CONDITIONS)}
    body = limits_from_measurements(runs, losses)
    assert body["field"] == "ratio_to_ce" and body["reference"] == "torch_cross_entropy"
    for condition in CONDITIONS:
        for loss in losses:
            row = body["conditions"][condition][loss]
            measured = [next(r["ratio_to_ce"] for r in run if r["name"] == loss) for run in runs[condition]]
            assert row == limit_for(measured)
    floor = body["references"]["memory_floor"]["quiet"]
    assert floor["median_ms_spread"] > 1.1 and floor["ratio_field"] == "ratio_to_floor"
    assert set(floor["loss_ratio_spread"]) == set(losses)
    # A loss whose ratio moves by 70 % over the runs cannot be guarded against a 2x regression.
    noisy = {condition: [_measurement({"ce": 1.0, "seesaw": 0.9 * (1 + 0.7 * (seed % 2))}, 0.0, seed)
                         for seed in range(4)] for condition in CONDITIONS}
    with pytest.raises(ValueError, match=rf"too noisy to guard \(margin under {MIN_MARGIN}\): seesaw \(quiet\)"):
        limits_from_measurements(noisy, losses)


def test_limits_cover_every_loss_in_both_conditions_with_provenance():
    assert load_limits(LIMITS_FILE, here=machine()) == LIMITS
    for entry in json.loads(LIMITS_FILE.read_text())["machines"]:
        assert set(entry["conditions"]) == set(CONDITIONS)
        for condition in CONDITIONS:
            assert set(entry["conditions"][condition]) == set(LOSSES)
            for row in entry["conditions"][condition].values():
                assert row == limit_for([row["measured_min"], row["measured_max"]])
                assert row["margin"] >= MIN_MARGIN
        provenance = entry["provenance"]
        assert provenance["command"].startswith(DERIVE_COMMAND) and provenance["runs"] >= 2
        assert len(provenance["commit"]) == 40 and provenance["date"] and provenance["machine"]["cpu_capability"]
        assert set(entry["references"]) == set(REFERENCE_ROWS)
        assert entry["reference"] == {"ratio_to_ce": "torch_cross_entropy", "ratio_to_floor": "memory_floor"}[
            entry["field"]]


def test_limits_are_kept_per_machine_and_a_machine_without_them_is_named(tmp_path):
    path = tmp_path / "limits.json"
    avx512, avx2 = dict(machine(), cpu_capability="AVX512"), dict(machine(), cpu_capability="AVX2")

    def entry(derived_on, limit):
        return dict(LIMITS, conditions={"quiet": {"ce": {"limit": limit}}},
                    provenance=dict(LIMITS["provenance"], machine=derived_on))

    write_limits(entry(avx512, 1.5), path)
    write_limits(entry(avx2, 1.4), path)
    write_limits(entry(avx512, 1.6), path)  # derived again on the first machine: replaces its entry
    assert [e["provenance"]["machine"]["cpu_capability"] for e in json.loads(path.read_text())["machines"]] == \
        ["AVX2", "AVX512"]
    assert load_limits(path, here=avx512)["conditions"]["quiet"]["ce"]["limit"] == 1.6
    assert load_limits(path, here=avx2)["conditions"]["quiet"]["ce"]["limit"] == 1.4
    with pytest.raises(ValueError, match=r"no speed limits for this machine \(.*cpu_capability AVX10.*"
                                         r"derive them here with `suite bench guard --derive`"):
        load_limits(path, here=dict(machine(), cpu_capability="AVX10"))


def test_competing_process_is_stopped_on_error():
    with pytest.raises(KeyboardInterrupt):
        with competing_process() as process:
            assert process.poll() is None  # it runs inside the block
            raise KeyboardInterrupt
    assert process.poll() is not None


@pytest.mark.timing
@pytest.mark.parametrize("name", GUARD_LOSSES + REFERENCE_ROWS)
def test_kernel_benchmark(benchmark, name):
    kernel = build_kernel(name, SHAPE["num_rois"], SHAPE["num_classes"], SHAPE["dtype"], SHAPE["device"])
    benchmark.group = f"loss kernel {SHAPE['num_rois']}x{SHAPE['num_classes']} {SHAPE['dtype']} {SHAPE['device']}"
    benchmark.pedantic(kernel, rounds=5, warmup_rounds=1, iterations=1)
