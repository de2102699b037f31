"""The CI speed guard (suite.bench.guard): the working tree's losses timed beside the same losses at
the reference commit of baselines/speed_guard.json, in one run on this machine.

Correct code must pass, quiet and beside a competing process, and every loss made twice as slow
(its forward computing twice) must fail, in both conditions. Tests that time are marked `timing`:
scripts/test.sh runs them after the others, alone on the machine. Where the reference commit
cannot be read (a shallow clone, an exported tree), they fail with the one line that says how to
get it (docs/benchmarks.md says why they fail rather than skip). The rest (the limit's derivation,
the stale check, the reference's extraction, the slowed forward) is tested without timing.
"""

import json
import math
import subprocess

import pytest

from suite.bench import guard
from suite.bench.guard import (CONDITIONS, GUARD_FILE, GUARD_LOSSES, MIN_MARGIN, PIN_COMMAND, ReferenceUnavailable,
                               limit_for, limit_from_evidence, load_guard_file, reference_tree, resolve_commit,
                               violations, write_evidence)
from suite.bench.guard_worker import SlowedLosses, forward_twice
from suite.cli import main
from suite.environment import REPO_ROOT
from suite.losses import LOSSES, build_loss


@pytest.fixture(scope="module")
def guard_result():
    """One guard measurement (suite.bench.guard.run_guard), shared by the timed tests."""
    try:
        return guard.run_guard()
    except ReferenceUnavailable as error:
        pytest.fail(str(error), pytrace=False)


@pytest.mark.timing
@pytest.mark.parametrize("condition", CONDITIONS)
def test_working_tree_is_within_the_limit_of_the_reference(guard_result, condition):
    measured = guard_result["conditions"][condition]["as_is"]
    lines = violations(measured, guard_result["limit"], condition, guard_result["reference"])
    assert not lines, "loss speed guard failed:\n" + "\n".join(lines) + "\n" + guard.guard_table(measured)


@pytest.mark.timing
@pytest.mark.parametrize("loss", GUARD_LOSSES)
def test_guard_catches_a_loss_twice_as_slow(guard_result, loss):
    for condition in CONDITIONS:
        row = guard_result["conditions"][condition]["slowed"][loss]
        assert row["ratio"] > guard_result["limit"], (
            f"{loss} twice as slow passed the guard ({condition}): {row['ratio']:.2f}x the reference, "
            f"limit {guard_result['limit']:.2f}")


def test_a_slowed_forward_computes_twice_for_the_same_values_and_gradient():
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

    assert "forward" not in focal.__dict__  # focal inherits its forward
    slowed = SlowedLosses({"focal": focal})
    focal._terms = counted
    try:
        slowed.set(["focal"])
        twice = loss(logits, labels)["loss_cls"]
        slowed.set([])
    finally:
        focal._terms = original
    assert len(calls) == 2 and "forward" not in focal.__dict__  # the inherited forward is back
    assert torch.allclose(twice, expected)
    assert torch.allclose(torch.autograd.grad(twice, logits)[0], torch.autograd.grad(expected, logits)[0])


def test_a_loss_with_its_own_forward_gets_it_back():
    class Own:
        def forward(self, logits, labels):
            return {"loss": logits * labels}

    own = Own.__dict__["forward"]
    slowed = SlowedLosses({"own": Own})
    slowed.set(["own"])
    assert Own.forward is not own and Own().forward(2.0, 3.0) == {"loss": 6.0}
    slowed.set([])
    assert Own.__dict__["forward"] is own
    assert forward_twice(own)(Own(), 1.0, 4.0) == {"loss": 4.0}


def _ratios(**ratios):
    return {loss: {"work_ms": 10.0 * ratio, "reference_ms": 10.0, "ratio": ratio} for loss, ratio in ratios.items()}


def test_a_ratio_above_the_limit_missing_or_stale_is_named():
    commit = "0123456789abcdef"
    lines = violations(_ratios(ce=1.0, seesaw=1.5, focal=0.6), 1.4, "quiet", commit,
                       losses=("ce", "seesaw", "focal", "eql"))
    assert lines == [
        "eql (quiet): not measured",
        f"the reference 0123456789 is stale for focal (quiet): the working tree takes 0.60x its time, so a 2x "
        f"regression would pass the limit 1.40; re-pin with `{PIN_COMMAND}`",
        "seesaw (quiet): 1.50x the CPU time of the reference 0123456789, above the limit 1.40",
    ]
    assert violations(_ratios(ce=0.71, seesaw=1.39), 1.4, "contended", commit, losses=("ce", "seesaw")) == []


def test_failures_name_every_broken_check():
    def measured(as_is_changed=None, slowed_changed=None):
        return {"as_is": _ratios(**{**{loss: 1.0 for loss in GUARD_LOSSES}, **(as_is_changed or {})}),
                "slowed": _ratios(**{**{loss: 2.0 for loss in GUARD_LOSSES}, **(slowed_changed or {})})}

    result = {"reference": "0123456789abcdef", "limit": 1.4,
              "conditions": {"quiet": measured(), "contended": measured()}}
    assert guard.failures(result) == []
    result["conditions"]["contended"] = measured({"ce": 1.5}, {"seesaw": 1.3})
    assert guard.failures(result) == [
        "ce (contended): 1.50x the CPU time of the reference 0123456789, above the limit 1.40",
        "seesaw made twice as slow passed the guard (contended): 1.30x the reference, limit 1.40"]


def test_limit_sits_at_the_same_margin_above_the_worst_and_below_twice_the_best():
    row = limit_for([0.9, 1.1, 0.95])
    assert row["limit"] == pytest.approx(math.sqrt(2 * 0.9 * 1.1))
    assert row["limit"] / 1.1 == pytest.approx(row["margin"]) == pytest.approx(2 * 0.9 / row["limit"])
    for ratio in (0.9, 1.1):  # every A/A ratio passes, and twice it fails
        assert ratio < row["limit"] < 2 * ratio


def _evidence(capability, threads, ratios):
    return {"machine": {"cpu": "a cpu", "cpu_capability": capability, "torch": "2.x"}, "threads": threads,
            "runs": len(ratios), "ratios": {"quiet": {"ce": list(ratios)}, "contended": {"ce": [1.0]}}}


def test_limit_is_derived_from_every_evidence_row_and_refused_when_too_noisy(tmp_path):
    path = tmp_path / "speed_guard.json"
    path.write_text(json.dumps({"reference": {"commit": "c"}}))
    write_evidence(_evidence("AVX512", 1, [0.95, 1.05]), path)
    write_evidence(_evidence("AVX2", 1, [0.9, 1.0]), path)
    limit = write_evidence(_evidence("AVX512", 1, [0.97, 1.1]), path)  # replaces the first row
    body = json.loads(path.read_text())
    assert body["reference"] == {"commit": "c"} and body["limit"] == limit
    assert [row["machine"]["cpu_capability"] for row in limit["evidence"]] == ["AVX2", "AVX512"]
    assert limit["limit"] == pytest.approx(math.sqrt(2 * 0.9 * 1.1))
    with pytest.raises(ValueError, match=rf"0.600-1.200 leave a margin of 1.000, under {MIN_MARGIN}"):
        limit_from_evidence([_evidence("AVX2", 2, [0.6, 1.2])])


def test_the_committed_limit_is_derived_from_its_evidence_for_every_loss_and_condition():
    body = load_guard_file()
    limit = body["limit"]
    assert {key: limit[key] for key in ("limit", "measured_min", "measured_max", "margin")} == \
        limit_from_evidence(limit["evidence"])
    assert limit["settings"] == guard.settings()
    for row in limit["evidence"]:
        assert row["command"].startswith("suite bench guard --derive-limit") and row["runs"] >= 2
        assert len(row["commit"]) == 40 and row["date"] and row["machine"]["cpu_capability"]
        assert set(row["ratios"]) == set(CONDITIONS)
        assert all(set(per_loss) == set(LOSSES) and all(len(values) == row["runs"] for values in per_loss.values())
                   for per_loss in row["ratios"].values())
    reference = body["reference"]
    assert len(reference["commit"]) == 40 and reference["why"] and reference["provenance"]["command"]


def test_reference_tree_holds_the_suite_of_the_commit():
    head = resolve_commit("HEAD")
    with reference_tree("HEAD") as tree:
        assert sorted(path.name for path in tree.iterdir()) == ["suite"]
        committed = subprocess.run(["git", "-C", str(REPO_ROOT), "show", f"{head}:suite/losses/__init__.py"],
                                   capture_output=True, text=True, check=True).stdout
        assert (tree / "suite" / "losses" / "__init__.py").read_text() == committed
    assert not tree.exists()


def test_a_checkout_without_the_reference_gets_one_line_saying_how_to_get_it(tmp_path):
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{REPO_ROOT}", str(shallow)], check=True)
    commit = load_guard_file()["reference"]["commit"]
    parent = resolve_commit("HEAD~1")
    for missing in {commit, parent} - {resolve_commit("HEAD", shallow)}:
        with pytest.raises(ReferenceUnavailable) as error:
            resolve_commit(missing, shallow)
        assert str(error.value) == (f"the speed guard's reference commit {missing[:12]} is not in this checkout; "
                                    f"this clone is shallow: get the history with `git fetch --unshallow`")
    exported = tmp_path / "exported"
    exported.mkdir()
    with pytest.raises(ReferenceUnavailable, match=r"is not a git checkout, .*run it in a clone \(`git clone`\)") \
            as error:
        resolve_commit(commit, exported)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("arguments, message", [
    (["--demo-slower", "softmax"], "--demo-slower softmax: not a loss"),
    (["--threads", "0"], "--threads 0: must be at least 1"),
    (["--derive-limit", "--runs", "1"], "--runs 1: the limit needs at least 2 A/A runs"),
    (["--pin", "HEAD"], "--why: say why this commit is the reference"),
    (["--pin", "no-such-commit", "--why", "a test"], "reference commit no-such-comm is not in this checkout"),
])
def test_the_command_refuses_bad_arguments_in_one_line(capsys, arguments, message):
    before = GUARD_FILE.read_text()
    assert main(["bench", "guard", *arguments]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert GUARD_FILE.read_text() == before


def test_pinning_names_the_commit_with_why_and_provenance_and_keeps_the_limit(tmp_path):
    path = tmp_path / "speed_guard.json"
    path.write_text(json.dumps({"limit": {"limit": 1.5}}))
    reference = guard.pin("HEAD", " the kernels of HEAD ", path)
    assert reference["commit"] == resolve_commit("HEAD") and reference["why"] == "the kernels of HEAD"
    assert reference["provenance"]["command"].startswith("suite bench guard --pin HEAD")
    body = json.loads(path.read_text())
    assert body["reference"] == reference and body["limit"] == {"limit": 1.5}


def test_a_guard_file_without_its_sections_names_the_command_that_writes_them(tmp_path):
    path = tmp_path / "speed_guard.json"
    path.write_text(json.dumps({"reference": {"commit": "c", "why": "w", "provenance": {}}}))
    assert load_guard_file(path, sections=["reference"])["reference"]["commit"] == "c"
    with pytest.raises(ValueError, match=r"no limit limit, measured_min, .*; write it with `suite bench guard "
                                         r"--derive-limit`"):
        load_guard_file(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="cannot read the speed guard's file"):
        load_guard_file(path)
