"""Seeds for a planned comparison (suite.report.power): the half-width against Student's t from
tables, the smallest n by hand, and the committed study's paired sd recomputed from its records."""

import json
import math
from pathlib import Path

import pytest

from suite.report.power import half_width, main, paired_sds, seeds_needed

STUDY = Path(__file__).resolve().parents[1] / "results" / "study"


def test_half_width_is_t_times_sd_over_root_n():
    # t_{0.975, 2} = 4.3027, t_{0.975, 3} = 3.1824 (tables)
    assert half_width(1.0, 3) == pytest.approx(4.3027 / math.sqrt(3), abs=1e-4)
    assert half_width(2.0, 4) == pytest.approx(3.1824 * 2.0 / 2, abs=1e-4)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        half_width(1.0, 1)


@pytest.mark.parametrize("sd, target, expected", [
    (1.0, 2.0, 4),   # n = 3: 4.303 / 1.732 = 2.48 > 2; n = 4: 3.182 / 2 = 1.59
    (2.0, 2.0, 7),   # n = 6: 2.571 * 2 / 2.449 = 2.10 > 2; n = 7: 2.447 * 2 / 2.646 = 1.85
    (0.0, 2.0, 2),
    (1.0, 10.0, 2),  # n = 2: 12.706 / 1.414 = 8.98
])
def test_seeds_needed_is_the_smallest_n(sd, target, expected):
    assert seeds_needed(sd, target) == expected


@pytest.mark.parametrize("sd, target, message", [(math.nan, 2.0, "sd must be finite"), (-1.0, 2.0, "sd must be"),
                                                 (1.0, 0.0, "target half-width"), (1e6, 0.1, "more than")])
def test_bad_input_is_a_value_error(sd, target, message):
    with pytest.raises(ValueError, match=message):
        seeds_needed(sd, target)


def _metric(arm_dir: str, seed: int, task: str) -> float:
    return json.loads((STUDY / "runs" / arm_dir / f"seed{seed}" / "run.json").read_text())["metrics"][task]["APr"]


def test_the_committed_study_by_hand(capsys):
    differences = paired_sds([STUDY], "seesaw+cos", "ce+cos")
    seeds = [int(path.name[4:]) for path in sorted((STUDY / "runs" / "seesaw").glob("seed*"))]
    needed = []
    for task in ("bbox", "segm"):
        per_seed = [_metric("seesaw", seed, task) - _metric("ce_cosine", seed, task) for seed in seeds]
        mean = sum(per_seed) / len(per_seed)
        sd = math.sqrt(sum((value - mean) ** 2 for value in per_seed) / (len(per_seed) - 1))
        column = differences[f"{task}_APr"]
        assert (column.n, column.mean, column.sd) == (len(seeds), pytest.approx(mean), pytest.approx(sd))
        needed.append(seeds_needed(sd, 2.0))
    assert main(["--results", str(STUDY)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"decided: {max(needed)} paired seeds")


def test_cli_errors_are_one_line(capsys, tmp_path):
    assert main(["--results", str(STUDY), "--arm", "nope+cos"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "0 protocols" in err
    assert main(["--results", str(tmp_path)]) == 2
    assert "no run.json or benchmark record" in capsys.readouterr().err


def test_the_search_start_does_not_skip_the_answer():
    # From the normal bound up: for every sd the answer's predecessor is too wide.
    for sd in (0.3, 1.0, 2.5, 7.0):
        n = seeds_needed(sd, 2.0)
        assert half_width(sd, n) <= 2.0 and (n == 2 or half_width(sd, n - 1) > 2.0)
