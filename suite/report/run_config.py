"""What the report reads of a run record's `config`, in either of its two forms (docs/records.md):
a `suite train` run's Detectron2 yaml config (`MODEL`, `SOLVER`, ...), or a LazyConfig run's
(scripts/train_net.py: `model`, `train`, `dataloader`, ..., every `_target_` a dotted name): which
runs are seeds of one experiment, and which experiments share a protocol. What was trained (the
classifier, the start, the schedule, the evaluator) the report reads from the record's `setting`
(suite.harness.run_record.record_setting).

A run of one form is never grouped or paired with a run of the other: their configs differ."""

import copy
from typing import Any, Dict, Iterable, Tuple

from suite.harness.run_record import box_predictor_nodes, is_lazy_config

# Where and with which seed a run ran, not what it ran; the initial weights too, since a study's
# seed s starts from its own file of initial weights (OUT/init/seed<s>.pth).
YAML_WHERE_KEYS = ("SEED", "OUTPUT_DIR", "MODEL.WEIGHTS")
LAZY_WHERE_KEYS = ("train.seed", "train.output_dir", "train.init_checkpoint", "dataloader.evaluator.output_dir")
# The loss's own settings, in which the arms of one protocol differ: keys of MODEL.ROI_BOX_HEAD
# (and every loss-parameter node under it, e.g. SEESAW), arguments of a LazyConfig's box predictors.
YAML_LOSS_KEYS = ("CLS_LOSS", "COSINE_CLASSIFIER", "COSINE_SCALE", "CLS_NUM_LOGITS", "CHECK_LABELS",
                  "RECORD_GRAD_BALANCE")
LAZY_LOSS_ARGUMENTS = ("loss_name", "loss_params", "cosine_scale", "num_logits", "check_labels",
                       "record_grad_balance", "class_freq")


def without_keys(config: Dict[str, Any], paths: Iterable[Tuple[str, ...]]) -> Dict[str, Any]:
    """A deep copy of `config` without the key paths `paths` (tuples of keys, e.g. ("MODEL",
    "WEIGHTS")); a node that they leave empty goes too."""
    paths = set(paths)

    def strip(node: Dict[str, Any], path: Tuple[str, ...]) -> Dict[str, Any]:
        kept = {}
        for key, value in node.items():
            if path + (key,) in paths:
                continue
            if isinstance(value, dict):
                child = strip(value, path + (key,))
                if child or not value:
                    kept[key] = child
            else:
                kept[key] = copy.deepcopy(value)
        return kept

    return strip(config, ())


def experiment_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """The config without where and with which seed the run ran (YAML_WHERE_KEYS or
    LAZY_WHERE_KEYS): runs with equal ones are seeds of one experiment."""
    where = LAZY_WHERE_KEYS if is_lazy_config(config) else YAML_WHERE_KEYS
    return without_keys(config, (tuple(key.split(".")) for key in where))


def protocol_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """The experiment config without the loss's own settings (YAML_LOSS_KEYS and the loss
    parameter nodes, or LAZY_LOSS_ARGUMENTS of every box predictor): what the arms of one
    protocol share."""
    config = experiment_config(config)
    if is_lazy_config(config):
        for node in box_predictor_nodes(config):
            for argument in LAZY_LOSS_ARGUMENTS:
                node.pop(argument, None)
        return config
    model = dict(config.get("MODEL", {}))
    model["ROI_BOX_HEAD"] = {key: value for key, value in model.get("ROI_BOX_HEAD", {}).items()
                             if key not in YAML_LOSS_KEYS and not isinstance(value, dict)}
    config["MODEL"] = model
    return config
