"""suite.report.protocols: a protocol's name says what it is, and what sets it apart from a twin."""

import copy

from suite.report.protocols import protocol_keys, protocol_names
from suite.report.records import Records

from test_report_generate import run_record


def records(*runs):
    return Records(runs=[(f"runs/{index}/run.json", record) for index, record in enumerate(runs)])


def test_a_protocol_is_named_by_its_data_iterations_and_start():
    scratch = run_record("ce", 0, 20.0, 10.0, 20.0, 20.0)
    pretrained = run_record("ce", 0, 20.0, 10.0, 20.0, 20.0, dataset="other", iterations=250)
    pretrained["config"]["MODEL"] = {"WEIGHTS": "init/seed0.pth"}
    found = records(scratch, pretrained)
    names = protocol_names(found)
    keys = protocol_keys(found)
    assert names[keys["runs/0/run.json"]] == "6 classes, 40 images, 100 it, from scratch"
    assert names[keys["runs/1/run.json"]] == "6 classes, 40 images, 250 it, pretrained"


def test_twins_are_told_apart_by_their_data_folder_else_by_their_config():
    here = run_record("ce", 0, 20.0, 10.0, 20.0, 20.0)
    there = copy.deepcopy(here)
    there["dataset"]["path"] = "elsewhere/synth"
    by_folder = protocol_names(records(here, there))
    assert sorted(by_folder.values()) == ["6 classes, 40 images, 100 it, from scratch, data data/synth",
                                          "6 classes, 40 images, 100 it, from scratch, data elsewhere/synth"]
    here["config"]["INPUT"] = {"MIN_SIZE_TRAIN": [128], "MAX_SIZE_TRAIN": 128, "FORMAT": "BGR", "CROP": False}
    other = copy.deepcopy(here)
    other["config"]["INPUT"] = {"MIN_SIZE_TRAIN": [64], "MAX_SIZE_TRAIN": 64, "FORMAT": "RGB", "CROP": True}
    by_config = protocol_names(records(here, other))
    assert sorted(by_config.values()) == [
        "6 classes, 40 images, 100 it, from scratch, INPUT.CROP=false, INPUT.FORMAT=\"BGR\", INPUT.MAX_SIZE_TRAIN=128, ...",
        "6 classes, 40 images, 100 it, from scratch, INPUT.CROP=true, INPUT.FORMAT=\"RGB\", INPUT.MAX_SIZE_TRAIN=64, ..."]
