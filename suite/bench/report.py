"""The benchmark file: environment plus records (docs/records.md), written atomically."""

from pathlib import Path
from typing import Dict, List

from suite.environment import collect
from suite.records import write_json_atomic
from suite.schema import BENCH_KINDS, SCHEMA_VERSION


def write_bench_file(path: Path, kind: str, device: str, records: List[Dict[str, object]]) -> None:
    if kind not in BENCH_KINDS:
        raise ValueError(f"benchmark kind must be one of {BENCH_KINDS}, got {kind!r}")
    write_json_atomic(path, {
        "schema_version": SCHEMA_VERSION, "kind": kind,
        "environment": collect(device), "records": records,
    })
