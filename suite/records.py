"""Atomic JSON writing and checked reading of the suite's records (formats: docs/records.md)."""

import json
import math
import os
import tempfile
from pathlib import Path
from contextlib import contextmanager
from typing import IO, Any, Dict, Iterable, Iterator

from suite.errors import UserError
from suite.schema import SCHEMA_VERSION


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def _file_mode() -> int:
    """The permissions `open()` would give a new file (mkstemp's are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def open_atomic(path: Path, mode: str = "w") -> Iterator[IO]:
    """A stream whose content replaces `path` when the block ends without an exception, so that a
    reader (or a process killed meanwhile) sees the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, _file_mode())
        with os.fdopen(handle, mode) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (see open_atomic)."""
    with open_atomic(path) as stream:
        stream.write(text)


def write_json_atomic(path: Path, record: Dict[str, Any]) -> None:
    """Write `record` to `path` atomically (see write_text_atomic); NaN and infinities as null."""
    write_text_atomic(path, json.dumps(_json_safe(record), indent=1, sort_keys=True, allow_nan=False) + "\n")


def read_record(path: Path, kind: str, required: Iterable[str]) -> Dict[str, Any]:
    """Read a record of `kind`, refusing (UserError naming file and field) another schema version,
    another kind or a missing field."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: not a readable JSON record ({error})") from None
    if not isinstance(record, dict):
        raise UserError(f"{path}: not a JSON object")
    if record.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{path}: schema_version {record.get('schema_version')!r}, this suite reads {SCHEMA_VERSION}")
    if record.get("kind") != kind:
        raise UserError(f"{path}: kind {record.get('kind')!r}, expected {kind!r}")
    missing = [field for field in required if field not in record]
    if missing:
        raise UserError(f"{path}: missing field(s) {', '.join(missing)}")
    return record
