"""suite.report.across on hand-made records: the change of a paired difference from the protocol
on the milder data set to the one on the harsher, with Welch's interval, and the report's section."""

import json
import math

import pytest

from suite.report import across, paired, stats
from suite.report.readme import build_report

from test_report_paired import records, study_run

# Training image counts per category: the milder set's rarest class is as frequent as the others
# (pressure 6), the harsher one's is in 1 image (pressure 443).
MILD_COUNTS = [10] * 6
HARSH_COUNTS = [250, 150, 30, 10, 2, 1]


def on_dataset(record, name, image_counts):
    record["dataset"].update(name=name, path=f"data/{name}")
    for category, count in zip(record["per_category"], image_counts):
        category["image_count"] = count
    return record


def two_protocols():
    """Seesaw - CE in AP_r: 1 and 3 on the milder set (named so that it sorts second), 4, 8 and 6
    on the harsher one."""
    mild = [on_dataset(study_run(loss, seed, apr), "b_mild", MILD_COUNTS)
            for loss, seed, apr in (("ce", 0, 10.0), ("ce", 1, 10.0), ("seesaw", 0, 11.0), ("seesaw", 1, 13.0))]
    harsh = [on_dataset(study_run(loss, seed, apr), "a_harsh", HARSH_COUNTS)
             for loss, seed, apr in (("ce", 0, 0.0), ("ce", 1, 0.0), ("ce", 2, 0.0), ("seesaw", 0, 4.0),
                                     ("seesaw", 1, 8.0), ("seesaw", 2, 6.0))]
    return records(*mild, *harsh)


def changes(gathered):
    return across.changes_frame(paired.protocols(gathered), gathered)


def test_change_runs_from_the_milder_set_to_the_harsher_with_welchs_interval():
    frame = changes(two_protocols())
    assert set(frame["column"]) == set(across.COLUMNS) and set(frame["arm"]) == {"seesaw"}
    row = frame[frame["column"] == "segm_APr"].iloc[0]
    assert row["from"].startswith("b_mild: ") and row["to"].startswith("a_harsh: ")
    assert (row["n_from"], row["n_to"], row["change"]) == (2, 3, pytest.approx(4.0))  # mean 6 - mean 2
    nu = (7 / 3) ** 2 / (1 + (4 / 3) ** 2 / 2)  # variances of the means: 2 / 2 and 4 / 3
    half = stats.t_quantile(0.975, nu) * math.sqrt(7 / 3)
    assert (row["df"], row["low"], row["high"]) == (pytest.approx(nu), pytest.approx(4.0 - half),
                                                    pytest.approx(4.0 + half))
    assert row["verdict"] == stats.NO_DIFFERENCE
    ap = frame[frame["column"] == "segm_AP"].iloc[0]
    assert ap["change"] == 0.0 and math.isnan(ap["low"])  # no spread on either side: no interval


def test_one_protocol_or_one_seed_gives_no_change():
    found = two_protocols()
    assert changes(records(*[record for _, record in found.runs][:4])).empty
    single = [record for _, record in found.runs if not (record["dataset"]["name"] == "b_mild" and record["seed"] == 1
                                                          and record["loss"]["name"] == "seesaw")]
    assert changes(records(*single)).empty  # seesaw on the milder set at one seed only


def test_the_report_has_the_section(tmp_path):
    for index, (_, record) in enumerate(two_protocols().runs):
        path = tmp_path / "runs" / str(index) / "run.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(record))
    text = build_report([tmp_path / "runs"], tmp_path / "report").readme.read_text()
    assert "## Across protocols" in text
    section = text.split("## Across protocols", 1)[1]
    assert "From *b_mild: " in section and "* to *a_harsh: " in section
    line = next(line for line in section.splitlines() if line.startswith("| seesaw − ce |"))
    assert line.startswith("| seesaw − ce | 2, 3 | +0.0 | +4.0 [") and line.endswith("n.d. |")


def test_two_protocols_of_equal_pressure_are_not_called_a_change_toward_lvis():
    """The same set in two folders (one study trained again elsewhere): the pair is marked, and a
    pair of different pressures is not."""
    found = two_protocols()
    again = [on_dataset(json.loads(json.dumps(record)), "c_again", HARSH_COUNTS)
             for _, record in found.runs if record["dataset"]["name"] == "a_harsh"]
    frame = changes(records(*(record for _, record in found.runs), *again))
    by_pair = {(row["from"].split(":")[0], row["to"].split(":")[0]): row["equal_pressure"]
               for _, row in frame.iterrows()}
    assert by_pair == {("b_mild", "a_harsh"): False, ("b_mild", "c_again"): False, ("a_harsh", "c_again"): True}
    text = "\n".join(across.change_tables(frame))
    assert "to *c_again: 6 classes, 40 images, 100 it, pretrained* (equal pressure on the rarest class: not a change " \
           "toward LVIS):" in text
    assert "to *a_harsh: 6 classes, 40 images, 100 it, pretrained*:" in text
