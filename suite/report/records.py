"""Gathering the records a report is built from (formats: docs/records.md), with checks.

Every `run.json` under the results folders is a run record; any other `*.json` is a record when
it is a JSON object with a `kind` (benchmark files). A record of another schema version or with a
missing or malformed field is not used: it goes to `left_out` as (path, reason).
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from suite.errors import UserError
from suite.schema import (AP_METRICS, BENCH_EVAL_KIND, BENCH_FIELDS, BENCH_KINDS, BENCH_STEP_KIND, BOOTSTRAP_KIND,
                          BOX_PREDICTOR_FIELDS, CATEGORY_FIELDS, DATASET_FIELDS, ENVIRONMENT_FIELDS, EVAL_FIELDS,
                          EVAL_NUMBERS, GRAD_BALANCE_FIELDS, LOSS_FIELDS, RUN_FIELDS, RUN_KIND, RUN_RECORD,
                          SCHEMA_VERSION, SETTING_FIELDS, STEP_FIELDS, STUDY_KIND, TASKS, TRAIN_FIELDS)

# Records read elsewhere, not gathered: a study's own record, a run's bootstrap (read beside
# its run.json by suite.report.paired).
SKIPPED_KINDS = (STUDY_KIND, BOOTSTRAP_KIND)


class RecordError(ValueError):
    """A record that cannot be used; the message names the field."""


@dataclass
class Records:
    """runs: (path, record) of valid run records; benches: (path, record) of valid benchmark files;
    left_out: (path, reason), all sorted by path."""

    runs: List[Tuple[str, Dict[str, Any]]] = field(default_factory=list)
    benches: List[Tuple[str, Dict[str, Any]]] = field(default_factory=list)
    left_out: List[Tuple[str, str]] = field(default_factory=list)


def _require(mapping: Any, fields: Iterable[str], where: str) -> None:
    if not isinstance(mapping, dict):
        raise RecordError(f"{where} is not an object")
    missing = [name for name in fields if name not in mapping]
    if missing:
        raise RecordError(f"missing field(s) {', '.join(where + '.' + name if where else name for name in missing)}")


def _number_or_null(value: Any, where: str) -> None:
    """A finite number or null (JSON has no NaN or infinity; Python's json module reads them)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value)):
        raise RecordError(f"{where} is {value!r}, not a finite number or null")


def check_run(record: Dict[str, Any]) -> None:
    """Raise RecordError naming the first field of a run record that is missing or malformed."""
    _require(record, RUN_FIELDS, "")
    _require(record["loss"], LOSS_FIELDS, "loss")
    _require(record["dataset"], DATASET_FIELDS, "dataset")
    if "setting" in record:
        _require(record["setting"], SETTING_FIELDS, "setting")
        if not isinstance(record["setting"]["box_predictors"], list):
            raise RecordError("setting.box_predictors is not a list")
        for index, node in enumerate(record["setting"]["box_predictors"]):
            _require(node, BOX_PREDICTOR_FIELDS, f"setting.box_predictors[{index}]")
    if not isinstance(record["config"], dict):
        raise RecordError("config is not an object")
    _require(record["metrics"], TASKS, "metrics")
    for task in TASKS:
        _require(record["metrics"][task], AP_METRICS, f"metrics.{task}")
        for name in AP_METRICS:
            _number_or_null(record["metrics"][task][name], f"metrics.{task}.{name}")
    if not isinstance(record["per_category"], list):
        raise RecordError("per_category is not a list")
    for index, category in enumerate(record["per_category"]):
        _require(category, CATEGORY_FIELDS, f"per_category[{index}]")
        if category["frequency"] not in ("r", "c", "f"):
            raise RecordError(f"per_category[{index}].frequency is {category['frequency']!r}, not r/c/f")
        for name in ("bbox_AP", "segm_AP"):
            _number_or_null(category[name], f"per_category[{index}].{name}")
    _require(record["train"], TRAIN_FIELDS, "train")
    for name in ("wall_s", "iters_per_s"):
        _number_or_null(record["train"][name], f"train.{name}")
    if not isinstance(record["train"]["loss_curve"], list):
        raise RecordError("train.loss_curve is not a list")
    for index, point in enumerate(record["train"]["loss_curve"]):
        if not isinstance(point, dict):
            raise RecordError(f"train.loss_curve[{index}] is not an object")
        for name, value in point.items():
            _number_or_null(value, f"train.loss_curve[{index}].{name}")
    balance = record["grad_balance"]
    if balance is not None:
        _require(balance, GRAD_BALANCE_FIELDS, "grad_balance")
        lengths = {len(balance[name]) for name in ("class_ids", "pos_grad", "neg_grad")}
        if len(lengths) != 1:
            raise RecordError("grad_balance: class_ids, pos_grad and neg_grad differ in length")
        for name in ("pos_grad", "neg_grad"):
            for index, value in enumerate(balance[name]):
                _number_or_null(value, f"grad_balance.{name}[{index}]")
    _require(record["environment"], ENVIRONMENT_FIELDS, "environment")


def check_bench(record: Dict[str, Any]) -> None:
    """Raise RecordError naming the first field of a benchmark file that is missing or malformed."""
    _require(record, ("environment", "records"), "")
    _require(record["environment"], ENVIRONMENT_FIELDS, "environment")
    if not isinstance(record["records"], list):
        raise RecordError("records is not a list")
    if record["kind"] == BENCH_EVAL_KIND:
        for index, entry in enumerate(record["records"]):
            _require(entry, EVAL_FIELDS, f"records[{index}]")
            for name in EVAL_NUMBERS:
                if not isinstance(entry[name], (int, float)) or not math.isfinite(entry[name]):
                    raise RecordError(f"records[{index}].{name} is {entry[name]!r}, not a finite number")
        return
    fields = BENCH_FIELDS + (STEP_FIELDS if record["kind"] == BENCH_STEP_KIND else ())
    for index, entry in enumerate(record["records"]):
        _require(entry, fields, f"records[{index}]")
        for name in ("median_ms", "iqr_ms", "ratio_to_ce", "ratio_to_floor", "ratio_to_official") + (
                STEP_FIELDS if record["kind"] == BENCH_STEP_KIND else ()):
            _number_or_null(entry[name], f"records[{index}].{name}")
        if not isinstance(entry.get("contended", False), bool):
            raise RecordError(f"records[{index}].contended is {entry['contended']!r}, not true or false")


def _classify(path: Path) -> Optional[Dict[str, Any]]:
    """The parsed record at `path`, or None when the file is not a record at all (another JSON
    file of a run folder). Raises RecordError for a record that cannot be used."""
    is_run_file = path.name == RUN_RECORD
    if not is_run_file:
        with path.open("rb") as stream:
            if not stream.read(256).lstrip().startswith(b"{"):
                return None  # a list (LVIS results, possibly large) or JSON lines: not a record
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        if is_run_file:
            raise RecordError(f"not a readable JSON record ({error})") from None
        return None
    if not isinstance(record, dict) or (not is_run_file and "kind" not in record):
        if is_run_file:
            raise RecordError("not a JSON object with a kind")
        return None
    if not is_run_file and record["kind"] in SKIPPED_KINDS:
        return None
    if record.get("schema_version") != SCHEMA_VERSION:
        raise RecordError(f"schema_version {record.get('schema_version')!r}, this report reads {SCHEMA_VERSION}")
    kind = record.get("kind")
    if kind == RUN_KIND:
        check_run(record)
    elif kind in BENCH_KINDS:
        check_bench(record)
    else:
        raise RecordError(f"kind {kind!r}, not one of {RUN_KIND}, {', '.join(BENCH_KINDS)}")
    return record


def gather(results: Iterable[Path]) -> Records:
    """Every record under each folder in `results` (recursively). A folder that does not exist or
    holds no record at all, or results whose every record is left out, are a UserError."""
    records = Records()
    seen = set()
    for folder in results:
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"{folder}: no such results folder")
        found = 0
        for path in sorted(folder.rglob("*.json")):
            if not path.is_file():
                continue
            if path.resolve() in seen:  # also under an earlier folder
                found += 1
                continue
            try:
                record = _classify(path)
            except RecordError as error:
                records.left_out.append((str(path), str(error)))
                seen.add(path.resolve())
                found += 1
                continue
            if record is None:
                continue
            found += 1
            seen.add(path.resolve())
            (records.runs if record["kind"] == RUN_KIND else records.benches).append((str(path), record))
        if not found:
            raise UserError(f"{folder}: no run.json or benchmark record in it")
    if not records.runs and not records.benches:
        path, reason = records.left_out[0]
        raise UserError(f"every record was left out ({len(records.left_out)}), nothing to report; "
                        f"the first: {path}: {reason}")
    records.runs.sort(key=lambda item: item[0])
    records.benches.sort(key=lambda item: item[0])
    records.left_out.sort()
    return records
