"""LazyConfig (Detectron2's Python configs): the suite's box predictor in a recipe's place.

    from suite.d2.lazy import longtail_box_predictor
    model.roi_heads.box_predictor = longtail_box_predictor(model.roi_heads.box_predictor, "seesaw",
                                                           cosine_scale=20.0)

Every argument of the recipe's FastRCNNOutputLayers node is kept except Detectron2's own
classification-loss arguments (DROPPED_ARGUMENTS), which the suite's loss replaces; a node whose
`_target_` alone is swapped to LongTailOutputLayers keeps them, and LongTailOutputLayers refuses a
true `use_sigmoid_ce` or `use_fed_loss`.
"""

from typing import Any, Callable, List, Sequence, Union

from detectron2.config import LazyCall as L
from omegaconf import DictConfig

from suite.d2.box_predictor import FED_LOSS_ARGUMENTS, PARENT_LOSS_ARGUMENTS, LongTailOutputLayers
from suite.d2.class_freq import class_freq_from_metadata

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
