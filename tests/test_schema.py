"""suite.schema is what the writers write and the readers require: a run record built by the
harness passes the report's checks and carries exactly the schema's fields; the environment
holds the fields the report reads; every committed record reads."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from suite import schema
from suite.environment import collect
from suite.harness.run_record import RunSetting, build_run_record, record_setting
from suite.report.records import RecordError, check_run, gather

RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_a_built_run_record_has_the_schemas_fields_and_passes_the_readers_checks():
    setting = RunSetting(loss_name="ce", loss_params={}, config={"SEED": 0}, config_text="SEED: 0\n", iterations=2,
                         seed=0, device="cpu", evaluator="fast")
    metrics = {task: dict.fromkeys(schema.AP_METRICS, 1.0) for task in schema.TASKS}
    category = dict.fromkeys(schema.CATEGORY_FIELDS, 0) | {"frequency": "r", "bbox_AP": None, "segm_AP": None}
    record = build_run_record(setting, dataset=dict.fromkeys(schema.DATASET_FIELDS, "x"), metrics=metrics,
                              per_category=[category], wall_s=1.0, start_iter=0, segments=1,
                              curve=[{"iter": 2, "total_loss": 1.0}], grad_balance=None, weights_sha256=["0" * 64],
                              metric_protocols={})
    assert set(record) == {"schema_version", "kind", *schema.RUN_FIELDS, *schema.RUN_LATER_FIELDS}
    assert (record["schema_version"], record["kind"]) == (schema.SCHEMA_VERSION, schema.RUN_KIND)
    assert set(schema.LOSS_FIELDS) == set(record["loss"]) and set(schema.TRAIN_FIELDS) <= set(record["train"])
    assert set(record["setting"]) == set(schema.SETTING_FIELDS)
    check_run(record)
    with pytest.raises(RecordError, match="setting.evaluator"):
        check_run({**record, "setting": {name: value for name, value in record["setting"].items() if name != "evaluator"}})


def test_the_environment_holds_every_field_the_report_reads():
    assert set(schema.ENVIRONMENT_FIELDS) <= set(collect("cpu"))


def test_the_environment_names_the_instruction_set_aten_runs_on():
    """Not the processor's best: what ATen uses, which ATEN_CPU_CAPABILITY can hold lower."""
    code = "from suite.environment import collect; print(collect()['cpu_capability'])"
    held = subprocess.run([sys.executable, "-c", code], env={**os.environ, "ATEN_CPU_CAPABILITY": "default"},
                          capture_output=True, text=True, check=True).stdout.split()[-1]
    assert held == "DEFAULT"


def test_every_committed_record_reads():
    records = gather([RESULTS])
    assert records.runs and records.benches and not records.left_out, records.left_out
    assert {record["kind"] for _, record in records.benches} <= set(schema.BENCH_KINDS)


# The commit that added the fast evaluator and TEST.LVIS_EVALUATOR (39bb7f0): a yaml run recorded
# before it was evaluated by the official `lvis` API.
FAST_EVALUATOR_SINCE = "2026-11-30T10:05:26Z"


def test_a_committed_record_without_a_setting_derives_it_from_its_config():
    """record_setting's rule for records written before `setting`: a valid setting, whose
    evaluator is "official" only for runs recorded before the fast evaluator existed."""
    records = gather([RESULTS])
    for path, record in records.runs:
        setting = record_setting(record)
        check_run({**record, "setting": setting})
        if setting["evaluator"] == "official":
            assert record["finished_at"] < FAST_EVALUATOR_SINCE, path
        else:
            assert setting["evaluator"] == record["config"]["TEST"]["LVIS_EVALUATOR"], path
