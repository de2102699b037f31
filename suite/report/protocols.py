"""What a protocol of the report is and what it is called.

A protocol: runs on one data set (name and path) with one iteration count whose configs are
equal apart from the seed, the output folder, the initial weights file and the loss's own keys
(suite.report.run_config.protocol_config: for a yaml config YAML_LOSS_KEYS and every
loss-parameter node under MODEL.ROI_BOX_HEAD, for a LazyConfig the box predictors'
LAZY_LOSS_ARGUMENTS); a config key that some runs of a config form lack and all its others hold
at one value (later_keys: added after those runs were recorded) is left out, so runs from before
and after it share a protocol. Its key (protocol_key) is a sha256 of that; its name
(protocol_names) says what it is: the training set's classes and images, the iterations and the
start (pretrained or from scratch), and where two protocols share all that, what else differs
(the data set's folder, or the first config keys whose values differ). The key's first 8 digits
stay beside the name as a footnote.
"""

import hashlib
import json
from typing import Any, Dict, List, Set, Tuple

from suite.harness.run_record import is_lazy_config, record_setting
from suite.report.records import Records
from suite.report.run_config import protocol_config, without_keys

#: How many differing config keys a name lists before it stops.
MAX_KEYS_NAMED = 3


def _flatten(node: Dict[str, Any], path: Tuple[str, ...] = ()) -> Dict[Tuple[str, ...], Any]:
    flat = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, path + (key,)))
        else:
            flat[path + (key,)] = value
    return flat


def later_keys(configs: List[Dict[str, Any]]) -> Set[Tuple[str, ...]]:
    """Config key paths that some of `configs` of one form (yaml or LazyConfig, compared apart)
    lack and all the others of that form hold at one value: keys added to the plugin or
    Detectron2 after some runs were recorded, which those runs ran as the value every later run
    keeps (its default). protocol_key leaves them out, so runs from before and after such a key
    share a protocol; where the later runs disagree, the key stays."""
    later: Set[Tuple[str, ...]] = set()
    for lazy in (False, True):
        flats = [_flatten(config) for config in configs if is_lazy_config(config) == lazy]
        values: Dict[Tuple[str, ...], Set[str]] = {}
        for flat in flats:
            for path, value in flat.items():
                values.setdefault(path, set()).add(json.dumps(value, sort_keys=True))
        later |= {path for path, seen in values.items() if len(seen) == 1 and any(path not in flat for flat in flats)}
    return later


def protocol_key(record: Dict[str, Any], left_out: Set[Tuple[str, ...]] = frozenset()) -> str:
    """sha256 over what the runs of one comparison share (see the module docstring), leaving out
    the config key paths `left_out` (later_keys of the runs compared)."""
    config = protocol_config(without_keys(record["config"], left_out))
    shared = {"dataset": [record["dataset"]["name"], record["dataset"]["path"]], "iterations": record["iterations"],
              "config": config}
    return hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()


def protocol_keys(records: Records) -> Dict[str, str]:
    """{run record path: its protocol_key}, leaving out the later_keys of all of `records`' runs."""
    left_out = later_keys([record["config"] for _, record in records.runs])
    return {path: protocol_key(record, left_out) for path, record in records.runs}


def _config_paths(record: Dict[str, Any], left_out: Set[Tuple[str, ...]]) -> Dict[Tuple[str, ...], Any]:
    return _flatten(protocol_config(without_keys(record["config"], left_out)))


def _what(record: Dict[str, Any]) -> str:
    dataset = record["dataset"]
    start = "pretrained" if record_setting(record)["pretrained"] else "from scratch"
    return (f"{dataset['num_classes']} classes, {dataset['num_train_images']:,} images, "
            f"{record['iterations']} it, {start}")


def _differences(record: Dict[str, Any], twins: List[Dict[str, Any]], left_out: Set[Tuple[str, ...]]) -> str:
    """What sets `record`'s protocol apart from its twins' (same data set name and _what): the
    data set's folder where it differs from all of theirs, else the config keys whose values
    differ from a twin's."""
    folder = record["dataset"]["path"]
    if all(twin["dataset"]["path"] != folder for twin in twins):
        return f", data {folder}"  # as recorded: the same name whichever checkout reports it
    ours, missing = _config_paths(record, left_out), object()
    differing: Set[Tuple[str, ...]] = set()
    for twin in twins:
        theirs = _config_paths(twin, left_out)
        differing |= {path for path in ours.keys() | theirs.keys() if ours.get(path, missing) != theirs.get(path, missing)}
    named = [f"{'.'.join(path)}={json.dumps(ours.get(path))}" for path in sorted(differing)[:MAX_KEYS_NAMED]]
    return ", " + ", ".join(named) + (", ..." if len(differing) > MAX_KEYS_NAMED else "")


def protocol_names(records: Records) -> Dict[str, str]:
    """{protocol key: its name} for every protocol of `records`' runs, e.g. "31 classes, 2,483
    images, 320 it, pretrained" (the data set's own name heads the report's sections)."""
    keys = protocol_keys(records)
    first: Dict[str, Dict[str, Any]] = {}
    for path, record in records.runs:  # sorted by path
        first.setdefault(keys[path], record)
    left_out = later_keys([record["config"] for _, record in records.runs])
    base = {key: (record["dataset"]["name"], _what(record)) for key, record in first.items()}
    names = {}
    for key, record in first.items():
        twins = [first[other] for other in first if other != key and base[other] == base[key]]
        names[key] = base[key][1] + (_differences(record, twins, left_out) if twins else "")
    return names
