"""Loss kernels, forward + backward, beside three references measured in the same run.

Inputs: logits (N, num_logits) made as a classifier makes them (float32, or bfloat16 under
bfloat16 autocast) and int64 labels in [0, C], C = background, 25 % foreground with classes drawn
from a Zipf law (class j with weight 1 / (j + 1)), as a long-tailed batch has them.

Rows (`name`):
  ce, focal, eql, eqlv2,   suite.losses.build_loss(name, C) (EQL and fed with a Zipf class_freq),
  fed, seesaw              training mode (default kernels: on the CPU the fused ones of
                           suite.losses.kernels.cpu_compile, on accelerators the eager ones)
  seesaw_eager             the same Seesaw with compiled=False (the eager kernels)
  seesaw_compiled          the same Seesaw with compiled=True (on the CPU the default; on
                           accelerators the masked kernels through torch.compile, built in warm-up)
  torch_cross_entropy      F.cross_entropy on (N, C + 1): the cost a plain softmax head pays
  memory_floor             torch.mul(logits, 1.0, out=buffer) on (N, C + 1): one read and one write
                           of the logits, the least any loss can cost (no backward)
  seesaw_official          mmdet 3.3.0's SeesawLoss, called as its box head does:
                           loss(cls_score, labels, avg_factor=N); its count update loops over the
                           labels present with one .item() each
  eqlv2_official           mmdet 3.3.0's EQLV2Loss (N, C + 1), called as its box head does: loss(cls_score, labels)
Each timed call is one forward and one backward (torch.autograd.grad, so no gradient accumulates).
With `contended=True` everything is timed while a competing multi-threaded torch process runs
(suite.bench.contention); the records say so in `contended`.
"""

import contextlib
from typing import Callable, Dict, Iterable, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from suite.bench.contention import competing_process
from suite.bench.timing import Timing, time_calls
from suite.losses import LOSSES, build_loss
from suite.losses.official import load_official_eqlv2, load_official_seesaw

ROIS_PER_IMAGE = 512
FOREGROUND_FRACTION = 0.25
DTYPES = {"float32": None, "bfloat16-autocast": torch.bfloat16}
LOSS_ROWS = ("ce", "focal", "eql", "eqlv2", "fed", "seesaw", "seesaw_eager", "seesaw_compiled")
REFERENCE_ROWS = ("torch_cross_entropy", "memory_floor", "seesaw_official", "eqlv2_official")
# Reference row of each ratio field; ratio_to_official compares a loss with its own official code.
RATIO_FIELDS = {"ratio_to_ce": "torch_cross_entropy", "ratio_to_floor": "memory_floor"}
OFFICIAL_ROWS = {"seesaw": "seesaw_official", "seesaw_eager": "seesaw_official", "seesaw_compiled": "seesaw_official",
                 "eqlv2": "eqlv2_official"}


def zipf_class_freq(num_classes: int) -> Tensor:
    """(num_classes,) float64 image frequency falling as 1/rank (0.3 for the first class), so that
    classes from rank ~270 on count as rare for EQL's lambda = 1.1e-3."""
    return 0.3 / torch.arange(1, num_classes + 1, dtype=torch.float64)


def make_labels(num_rois: int, num_classes: int, seed: int = 0) -> Tensor:
    """(num_rois,) int64 labels: FOREGROUND_FRACTION foreground, Zipf-distributed, the rest background (num_classes)."""
    generator = torch.Generator().manual_seed(seed)
    num_fg = round(num_rois * FOREGROUND_FRACTION)
    labels = torch.full((num_rois,), num_classes, dtype=torch.int64)
    labels[:num_fg] = torch.multinomial(zipf_class_freq(num_classes), num_fg, replacement=True, generator=generator)
    return labels[torch.randperm(num_rois, generator=generator)]


def make_logits(num_rois: int, num_logits: int, dtype_name: str, device: str, seed: int = 0) -> Tensor:
    """(num_rois, num_logits) leaf logits requiring grad, float32 or bfloat16 (what a linear layer
    under bfloat16 autocast outputs)."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_rois, num_logits, generator=generator) * 2.0
    dtype = DTYPES[dtype_name] or torch.float32
    return logits.to(device=device, dtype=dtype).requires_grad_()


def build_loss_module(name: str, num_classes: int, device: str) -> torch.nn.Module:
    """A suite loss for a row of LOSS_ROWS, in training mode on `device`."""
    if name in ("seesaw_eager", "seesaw_compiled"):
        loss = build_loss("seesaw", num_classes, compiled=name == "seesaw_compiled")
    elif LOSSES[name].needs_class_freq:
        loss = build_loss(name, num_classes, class_freq=zipf_class_freq(num_classes))
    else:
        loss = build_loss(name, num_classes)
    return loss.to(device).train()


def _official_seesaw(num_classes: int, device: str) -> torch.nn.Module:
    official = load_official_seesaw()
    return official.SeesawLoss(p=0.8, q=2.0, num_classes=num_classes, eps=1e-2, return_dict=True).to(device)


def build_kernel(name: str, num_rois: int, num_classes: int, dtype_name: str, device: str,
                 seed: int = 0) -> Callable[[], None]:
    """A callable running row `name` once (forward + backward; the floor: one copy) on fixed inputs."""
    labels = make_labels(num_rois, num_classes, seed).to(device)
    autocast_dtype = DTYPES[dtype_name]
    device_type = torch.device(device).type

    if name == "memory_floor":
        logits = make_logits(num_rois, num_classes + 1, dtype_name, device, seed).detach()
        buffer = torch.empty_like(logits)
        return lambda: torch.mul(logits, 1.0, out=buffer)

    if name == "torch_cross_entropy":
        def compute(logits):
            return F.cross_entropy(logits, labels)
        num_logits = num_classes + 1
    elif name == "seesaw_official":
        official = _official_seesaw(num_classes, device)

        def compute(logits):
            return sum(official(logits, labels, avg_factor=num_rois).values())
        num_logits = num_classes + 2
    elif name == "eqlv2_official":
        official = load_official_eqlv2().EQLV2Loss(num_classes=num_classes).to(device)

        def compute(logits):
            return official(logits, labels)
        num_logits = num_classes + 1
    elif name in LOSS_ROWS:
        loss = build_loss_module(name, num_classes, device)

        def compute(logits):
            return sum(loss(logits, labels).values())
        num_logits = loss.num_logits
    else:
        raise ValueError(f"unknown benchmark row {name!r}; known: {', '.join(LOSS_ROWS + REFERENCE_ROWS)}")
    logits = make_logits(num_rois, num_logits, dtype_name, device, seed)

    def forward_backward():
        with torch.autocast(device_type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
            value = compute(logits)
        torch.autograd.grad(value, logits)

    return forward_backward


def add_ratios(records: List[Dict[str, object]]) -> None:
    """Set ratio_to_ce / _floor / _official of each record, in place: its median over the median of
    the reference row with the same scope, device, dtype, shape and contention (None where that row
    is absent; ratio_to_official only for a loss with official code, OFFICIAL_ROWS)."""
    def key(record):
        return (record["scope"], record["device"], record["dtype"], record["num_rois"], record["num_classes"],
                record.get("contended", False))

    medians = {(record["name"], key(record)): record["median_ms"] for record in records}
    for record in records:
        references = dict(RATIO_FIELDS, ratio_to_official=OFFICIAL_ROWS.get(record["name"]))
        for field, reference in references.items():
            reference_ms = medians.get((reference, key(record)))
            record[field] = record["median_ms"] / reference_ms if reference_ms else None


def timing_record(name: str, scope: str, device: str, dtype_name: str, num_rois: int, num_classes: int,
                  timing: Timing, contended: bool = False) -> Dict[str, object]:
    return {
        "name": name, "scope": scope, "device": device, "dtype": dtype_name,
        "num_rois": num_rois, "num_classes": num_classes, "contended": contended,
        "median_ms": timing.median_ms, "iqr_ms": timing.iqr_ms, "repeats": timing.repeats,
    }


def run_kernel_bench(device: str, quick: bool, rows: Iterable[str] = LOSS_ROWS + REFERENCE_ROWS,
                     images: Iterable[int] = (2, 16), classes: Iterable[int] = (1203, 80),
                     dtypes: Iterable[str] = tuple(DTYPES), contended: bool = False,
                     progress: Optional[Callable[[str], None]] = None) -> List[Dict[str, object]]:
    """Time every row at every shape (images x ROIS_PER_IMAGE RoIs, classes) and dtype; one group of
    rows is timed interleaved (suite.bench.timing), beside a competing process when `contended`.
    Returns the records with their ratios."""
    with competing_process() if contended else contextlib.nullcontext():
        records = _time_kernels(device, quick, tuple(rows), images, classes, dtypes, contended, progress)
    add_ratios(records)
    return records


def _time_kernels(device, quick, rows, images, classes, dtypes, contended, progress) -> List[Dict[str, object]]:
    warmup, repeats = (2, 5) if quick else (3, 20)
    records = []
    for num_classes in classes:
        for dtype_name in dtypes:
            for num_images in images:
                num_rois = num_images * ROIS_PER_IMAGE
                kernels = {name: build_kernel(name, num_rois, num_classes, dtype_name, device) for name in rows}
                timings = time_calls(kernels, device=device, warmup=warmup, repeats=repeats)
                for name, timing in timings.items():
                    records.append(timing_record(name, "kernel", device, dtype_name, num_rois, num_classes, timing,
                                                 contended))
                if progress:
                    progress(f"{num_rois} x {num_classes} {dtype_name}: " + ", ".join(
                        f"{name} {timing.median_ms:.2f} ms" for name, timing in timings.items()))
    return records
