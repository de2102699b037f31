"""LazyConfig (Detectron2's Python configs): the suite's box predictor in a recipe's place.

    from suite.d2.lazy import longtail_box_predictor
    model.roi_heads.box_predictor = longtail_box_predictor(model.roi_heads.box_predictor, "seesaw",
                                                           cosine_scale=20.0)

Every argument of the recipe's FastRCNNOutputLayers node is kept except Detectron2's own
classification-loss arguments (DROPPED_ARGUMENTS), which the suite's loss replaces; a node whose
`_target_` alone is swapped to LongTailOutputLayers keeps them, and LongTailOutputLayers refuses a
true `use_sigmoid_ce` or `use_fed_loss`.
"""

import dataclasses
import inspect
from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

from detectron2.config import LazyCall as L
from omegaconf import DictConfig, OmegaConf, SCMode

from suite.d2.box_predictor import FED_LOSS_ARGUMENTS, PARENT_LOSS_ARGUMENTS, LongTailOutputLayers
from suite.d2.class_freq import class_freq_from_metadata
from suite.losses import params_with_defaults

DROPPED_ARGUMENTS = tuple(PARENT_LOSS_ARGUMENTS) + FED_LOSS_ARGUMENTS


def longtail_box_predictor(predictor: DictConfig, loss_name: str, **arguments: Any) -> DictConfig:
    """L(LongTailOutputLayers) with the arguments of `predictor` (a recipe's L(FastRCNNOutputLayers)
    node; interpolations such as "${..num_classes}" kept as they are) but DROPPED_ARGUMENTS, `loss_name` (a name of suite.losses.LOSSES) and `arguments`
    (LongTailOutputLayers' own: loss_params, class_freq, cosine_scale, record_grad_balance, ...;
    or FastRCNNOutputLayers' in place of the recipe's values)."""
    kept = {key: value for key, value in predictor.items_ex(resolve=False) if key != "_target_" and key not in DROPPED_ARGUMENTS}
    kept.update(arguments, loss_name=loss_name)
    return L(LongTailOutputLayers)(**kept)


def train_class_freq(dataset_names: Union[str, Sequence[str]], num_classes: int) -> List[float]:
    """class_freq_from_metadata for a LazyConfig's `dataloader.train.dataset.names` (one name or
    several); for `class_freq=lambda: train_class_freq(dataloader.train.dataset.names,
    model.roi_heads.num_classes)`, read when the predictor is built."""
    names = [dataset_names] if isinstance(dataset_names, str) else list(dataset_names)
    return class_freq_from_metadata(names, num_classes)


def class_freq_of(config: DictConfig) -> Callable[[], List[float]]:
    """A class_freq callable reading `config.dataloader.train.dataset.names` and
    `config.model.roi_heads.num_classes` when called (so that later edits of the config count)."""
    return lambda: train_class_freq(config.dataloader.train.dataset.names, config.model.roi_heads.num_classes)


def box_predictor_nodes(roi_heads: DictConfig) -> List[DictConfig]:
    """The box predictor nodes of a LazyConfig's `model.roi_heads`: a cascade's `box_predictors`
    (stage 0 first), or its `box_predictor`."""
    return list(roi_heads.get("box_predictors") or []) + ([roi_heads.box_predictor] if "box_predictor" in roi_heads else [])


def _default(argument: str) -> Any:
    return inspect.signature(LongTailOutputLayers.__init__).parameters[argument].default


def trained_loss(roi_heads: DictConfig) -> Tuple[str, Dict[str, Any]]:
    """The loss every box predictor of `roi_heads` trains: its name and its parameters over the
    loss's defaults (suite.losses.params_with_defaults), as a run record lists them. ValueError
    when a predictor is not LongTailOutputLayers, or when the stages of a cascade differ in loss,
    parameters or classifier (`cosine_scale`): a run record holds one loss."""
    nodes = box_predictor_nodes(roi_heads)
    if not nodes:
        raise ValueError("model.roi_heads has neither box_predictor nor box_predictors")
    trained = []
    for stage, node in enumerate(nodes):
        if node.get("_target_") is not LongTailOutputLayers:
            raise ValueError(f"box predictor {stage} is {_dotted(node.get('_target_'))}, not LongTailOutputLayers: "
                             "it does not train a suite loss")
        name = node.get("loss_name", _default("loss_name"))
        given = node.get("loss_params") or {}
        given = OmegaConf.to_container(given, resolve=True) if isinstance(given, DictConfig) else dict(given)
        trained.append((name, params_with_defaults(name, given), node.get("cosine_scale", _default("cosine_scale"))))
    if any(stage != trained[0] for stage in trained[1:]):
        raise ValueError("the cascade's stages train different losses (loss_name, loss_params, cosine_scale: "
                         + "; ".join(f"stage {stage}: {setting}" for stage, setting in enumerate(trained)) + ")")
    name, params, _ = trained[0]
    return name, params


def _dotted(target: Any) -> str:
    """A class or function as "module.qualname"."""
    return f"{target.__module__}.{target.__qualname__}"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_asdict"):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if inspect.isclass(value) or inspect.isroutine(value):
        return _dotted(value)
    if hasattr(value, "_asdict") or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        fields = value._asdict() if hasattr(value, "_asdict") else {f.name: getattr(value, f.name)
                                                                    for f in dataclasses.fields(value)}
        return {"_target_": _dotted(type(value)), **_plain(dict(fields))}
    return repr(value)


def plain_config(cfg: DictConfig) -> Dict[str, Any]:
    """A LazyConfig as JSON-ready data (a run record's `config`): interpolations resolved (the
    values the run used), every `_target_` and any other class or function as its dotted name
    ("module.qualname"; a lambda's qualname says `<lambda>`), a named tuple or dataclass
    (Detectron2's ShapeSpec) as its fields under `_target_`, anything else as its repr."""
    # Dataclasses (ShapeSpec of current Detectron2) as themselves, not as nodes without their type.
    return _plain(OmegaConf.to_container(cfg, resolve=True, structured_config_mode=SCMode.INSTANTIATE))
