"""suite.report.paired on hand-made records: what makes one protocol, arms and references, and
the flags for dirty trees and mixed commits; records of yaml and of LazyConfig runs."""

import copy

from suite.report import paired, protocols
from suite.report.records import Records
from suite.report.run_config import experiment_config

from test_report_generate import ENV, run_record


def study_run(loss, seed, apr, cosine=False, commit="abc123", dirty=False, iterations=100):
    record = run_record(loss, seed, 20.0, apr, 15.0, 30.0, iterations=iterations)
    record["config"]["MODEL"] = {"WEIGHTS": f"init/seed{seed}.pth",
                                 "ROI_BOX_HEAD": {"CLS_LOSS": loss, "COSINE_CLASSIFIER": cosine, "COSINE_SCALE": 20.0,
                                                  "SEESAW": {"P": 0.8}, "FC_DIM": 256}}
    record["environment"] = dict(ENV, git_commit=commit, git_dirty=dirty)
    return record


def records(*runs):
    return Records(runs=[(f"runs/{index}/run.json", record) for index, record in enumerate(runs)])


def test_one_protocol_across_losses_weights_and_seeds():
    found = paired.protocols(records(study_run("ce", 0, 2.0), study_run("ce", 1, 4.0),
                                     study_run("seesaw", 0, 5.0, cosine=True), study_run("seesaw", 1, 9.0, cosine=True),
                                     study_run("ce", 0, 3.0, cosine=True), study_run("ce", 1, 3.0, cosine=True)))
    (protocol,) = found
    assert set(protocol.runs) == {"ce", "ce+cos", "seesaw+cos"} and protocol.flags == []
    frame = paired.comparisons_frame(protocol)
    pairs = set(zip(frame["arm"], frame["reference"]))
    assert pairs == {("ce+cos", "ce"), ("seesaw+cos", "ce"), ("seesaw+cos", "ce+cos")}
    row = frame[(frame["arm"] == "seesaw+cos") & (frame["reference"] == "ce+cos") & (frame["column"] == "segm_APr")]
    assert row["mean"].item() == 4.0  # (5 - 3 + 9 - 3) / 2


def test_other_iterations_or_head_settings_are_other_protocols():
    changed = study_run("ce", 1, 4.0)
    changed["config"]["MODEL"]["ROI_BOX_HEAD"]["FC_DIM"] = 128
    found = paired.protocols(records(study_run("ce", 0, 2.0), study_run("ce", 1, 4.0, iterations=50), changed))
    assert found == []  # no protocol holds two seeds of ce


def test_keys_added_after_older_runs_do_not_split_a_protocol():
    """A record from before TEST.LVIS_EVALUATOR and the cascade's stage weights existed (as the
    committed study's) shares a protocol with later ones that all hold one value of them, not
    where the later ones disagree."""
    older = study_run("ce", 0, 2.0)
    later = [study_run("ce", seed, 4.0) for seed in (1, 2)]
    for record in later:
        record["config"]["TEST"] = {"LVIS_EVALUATOR": "fast"}
        record["config"]["MODEL"]["ROI_BOX_CASCADE_HEAD"] = {"STAGE_LOSS_WEIGHTS": []}
    assert protocols.later_keys([older["config"], *(record["config"] for record in later)]) == {
        ("TEST", "LVIS_EVALUATOR"), ("MODEL", "ROI_BOX_CASCADE_HEAD", "STAGE_LOSS_WEIGHTS")}
    (protocol,) = paired.protocols(records(older, *later))
    assert set(protocol.runs["ce"]) == {0, 1, 2}
    later[1]["config"]["TEST"]["LVIS_EVALUATOR"] = "official"
    assert paired.protocols(records(older, *later)) == []  # three protocols of one seed each


def test_dirty_trees_mixed_commits_and_repeats_are_flagged():
    runs = [study_run("ce", 0, 2.0), study_run("ce", 1, 4.0, dirty=True), study_run("seesaw", 0, 5.0, commit="def456"),
            study_run("seesaw", 1, 9.0)]
    repeat = copy.deepcopy(runs[0])
    (protocol,) = paired.protocols(records(*runs, repeat))
    flags = " ".join(protocol.flags)
    assert "1 run(s) from a dirty working tree" in flags and "`runs/1/run.json`" in flags
    assert "2 different code commits: abc123, def456" in flags
    assert "repeated arm and seed, left out: `runs/4/run.json`" in flags


def lazy_run(loss, seed, apr, cosine=False):
    """A LazyConfig Cascade run's record (scripts/train_net.py): its config in the LazyConfig form."""
    record = study_run(loss, seed, apr)
    predictor = {"_target_": "suite.d2.box_predictor.LongTailOutputLayers", "num_classes": 6, "loss_name": loss,
                 "loss_params": {"compiled": False} if loss == "seesaw" else None,
                 "cosine_scale": 20.0 if cosine else None, "class_freq": "suite.d2.lazy.class_freq_of.<locals>.<lambda>"}
    record["config"] = {
        "model": {"roi_heads": {"_target_": "suite.d2.cascade.LongTailCascadeROIHeads",
                                "box_predictors": [dict(predictor) for _ in range(3)]}},
        "train": {"seed": seed, "output_dir": f"runs/lazy_{loss}_{seed}", "init_checkpoint": f"init/seed{seed}.pth",
                  "max_iter": 100},
        "dataloader": {"evaluator": {"output_dir": f"runs/lazy_{loss}_{seed}/eval", "max_dets_per_image": 300}},
    }
    return record


def test_lazy_config_runs_are_a_protocol_of_their_own():
    """LazyConfig runs differing in seed, output folders, initial weights and the box predictors'
    loss arguments are one protocol (arms from `loss_name` and `cosine_scale`), never one with yaml runs."""
    lazy = [lazy_run("ce", 0, 2.0), lazy_run("ce", 1, 4.0), lazy_run("seesaw", 0, 5.0, cosine=True),
            lazy_run("seesaw", 1, 9.0, cosine=True)]
    found = paired.protocols(records(*lazy, study_run("ce", 0, 2.0), study_run("ce", 1, 4.0)))
    assert len(found) == 2
    (protocol,) = [protocol for protocol in found if "seesaw+cos" in protocol.runs]
    assert set(protocol.runs) == {"ce", "seesaw+cos"} and set(protocol.runs["ce"]) == {0, 1}
    experiments = [experiment_config(run["config"]) for run in lazy[:3]]
    assert experiments[0] == experiments[1] != experiments[2]
    changed = copy.deepcopy(lazy[1])
    changed["config"]["model"]["roi_heads"]["box_predictors"][0]["num_classes"] = 7
    assert protocols.protocol_key(changed) != protocols.protocol_key(lazy[1])


def with_fixed(record, offset):
    """`record` evaluated also under the fixed protocol (`suite eval --protocol fixed`): its
    metrics shifted by `offset`."""
    fixed = {task: {metric: None if value is None else value + offset for metric, value in block.items()}
             for task, block in record["metrics"].items()}
    record["metric_protocols"] = {"standard": {"detections_per_image": 100}, "fixed": {"metrics": fixed}}
    return record


def test_other_evaluation_protocols_get_their_own_comparisons(tmp_path):
    from suite.report.readme import paired_section

    runs = [with_fixed(study_run("ce", 0, 2.0), 1.0), with_fixed(study_run("ce", 1, 4.0), 1.0),
            with_fixed(study_run("seesaw", 0, 5.0), 3.0), with_fixed(study_run("seesaw", 1, 9.0), 5.0)]
    (protocol,) = paired.protocols(records(*runs))
    assert paired.evaluations(protocol) == ["fixed"]
    standard = paired.compare(protocol, "seesaw", "ce")["bbox_APr"]
    fixed = paired.compare(protocol, "seesaw", "ce", "fixed")["bbox_APr"]
    assert standard.mean == 4.0 and fixed.mean == 7.0  # (5 + 3 - 3 + 9 + 5 - 5) / 2
    text = "\n".join(paired_section([protocol], tmp_path, []))
    assert "Paired difference to ce under `fixed` (t-interval over seeds):" in text
    assert "Under the `fixed` protocol, AP_fixed" in text
    del runs[0]["metric_protocols"]  # one run without it: the protocol's runs share no other evaluation
    (protocol,) = paired.protocols(records(*runs))
    assert paired.evaluations(protocol) == []
