"""The loss-speed guard: ratios measured in one run against the limits in baselines/bench_limits.json.

Only ratios are compared (a loss against `torch_cross_entropy`, the memory floor and the official
Seesaw, all timed side by side), so a slower machine moves every time alike and passes, while a
loss that became slower does not.
"""

import json
from pathlib import Path
from typing import Any, Dict, List

LIMITS_FILE = Path(__file__).resolve().parents[2] / "baselines" / "bench_limits.json"


def load_limits(path: Path = LIMITS_FILE) -> Dict[str, Any]:
    """The limits file: {"shape": {num_rois, num_classes, dtype, device},
    "max_ratio": {ratio field: {row name: limit}}}."""
    limits = json.loads(Path(path).read_text())
    for key in ("shape", "max_ratio"):
        if key not in limits:
            raise ValueError(f"{path}: no {key!r} in the limits file")
    return limits


def limit_violations(records: List[Dict[str, Any]], limits: Dict[str, Any]) -> List[str]:
    """One line per ratio above its limit, or missing, among the kernel records (suite.bench.kernel)
    of the limits' shape; empty when every limit holds."""
    shape = limits["shape"]
    by_name = {record["name"]: record for record in records
               if all(record[key] == value for key, value in shape.items())}
    violations = []
    for field, row_limits in limits["max_ratio"].items():
        for name, limit in sorted(row_limits.items()):
            ratio = by_name.get(name, {}).get(field)
            if ratio is None:
                violations.append(f"{name}: {field} not measured")
            elif ratio > limit:
                violations.append(f"{name}: {field} = {ratio:.2f} > limit {limit}")
    return violations
