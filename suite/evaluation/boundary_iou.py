"""Boundary IoU of masks (Cheng et al., CVPR 2021), as the LVIS Challenge 2021 evaluates masks.

A mask's boundary band is the mask minus its erosion by a square of side 2d + 1, the pixels
outside the image counting as background (so a mask cut by the image border has a band along
it): the mask pixels within chessboard distance d of the background. d is the dilation
`dilation_ratio` (0.02 in the challenge) times the image diagonal, rounded (Python's `round`)
and at least 1. The boundary IoU of a detection and a ground-truth mask is the IoU of their
bands, and the challenge's IoU is the smaller of that and the mask IoU: what the lvis-api's
`lvis_challenge_2021` branch computes (`boundary_utils.mask_to_boundary`, then pycocotools'
`iou` on the bands' RLEs and `np.minimum` with the mask IoU), the same doubles: the band IoU is
the integer intersection over the integer union, 0 where both bands are empty.

The bands are computed on each mask's bounding box only (outside it the mask, hence its band,
is empty; erosion there treats outside the crop as background, which it is), decoded from the
RLE for that box's columns only (`rle_crop`: decoding a whole image per mask dominated the
time), and only for the pairs that need them (`lvis_fast` asks for those whose mask IoU is >= 0.5).
"""

import math
from typing import List, Sequence, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

CHALLENGE_DILATION_RATIO = 0.02

Band = Tuple[int, int, np.ndarray]  # (y0, x0, (h, w) bool band on the mask's bounding box)


def dilation_pixels(height: int, width: int, dilation_ratio: float) -> int:
    """d of an image of `height` x `width` pixels."""
    return max(1, int(round(dilation_ratio * math.sqrt(height * height + width * width))))


def band(mask: np.ndarray, dilation_ratio: float) -> np.ndarray:
    """(H, W) bool boundary band of a (H, W) binary mask of a whole image."""
    full = np.zeros(mask.shape, bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows):
        crop = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        full[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = _band_of_crop(crop, dilation_pixels(*mask.shape,
                                                                                                dilation_ratio))
    return full


def _band_of_crop(crop: np.ndarray, dilation: int) -> np.ndarray:
    """The band of a mask given by its bounding box's pixels `crop` (outside it: background)."""
    if crop.size == 0:
        return np.zeros(crop.shape, bool)
    crop = np.ascontiguousarray(crop, np.uint8)
    kernel = np.ones((2 * dilation + 1, 2 * dilation + 1), np.uint8)
    eroded = cv2.erode(crop, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (crop > 0) & (eroded == 0)


def band_iou(a: Band, b: Band) -> float:
    """IoU of two cropped bands (integer intersection / integer union, 0 if both are empty)."""
    (ay, ax, am), (by, bx, bm) = a, b
    y0, x0 = max(ay, by), max(ax, bx)
    y1, x1 = min(ay + am.shape[0], by + bm.shape[0]), min(ax + am.shape[1], bx + bm.shape[1])
    inter = 0
    if y1 > y0 and x1 > x0:
        inter = int(np.count_nonzero(am[y0 - ay:y1 - ay, x0 - ax:x1 - ax] & bm[y0 - by:y1 - by, x0 - bx:x1 - bx]))
    union = int(np.count_nonzero(am)) + int(np.count_nonzero(bm)) - inter
    return inter / union if union > 0 else 0.0


class BoundaryIoU:
    """The challenge IoU of (detection, ground truth) pairs given as RLEs of whole images."""

    def __init__(self, dilation_ratio: float = CHALLENGE_DILATION_RATIO):
        if not dilation_ratio > 0:
            raise ValueError(f"dilation_ratio must be > 0, got {dilation_ratio}")
        self.dilation_ratio = dilation_ratio

    def bands(self, rles: Sequence[dict]) -> List[Band]:
        """The cropped band of each compressed RLE, each decoded on its bounding box only."""
        bands = []
        for rle, box in zip(rles, mask_utils.toBbox(list(rles)) if rles else []):
            x0, y0, width, height = (int(value) for value in box)
            dilation = dilation_pixels(int(rle["size"][0]), int(rle["size"][1]), self.dilation_ratio)
            bands.append((y0, x0, _band_of_crop(rle_crop(rle, x0, y0, width, height), dilation)))
        return bands

    def iou(self, mask_ious: np.ndarray, dt_rles: Sequence[dict], gt_rles: Sequence[dict],
            dt_keys: Sequence[int], gt_keys: Sequence[int]) -> np.ndarray:
        """(n,) min(mask IoU, band IoU) of n pairs: `mask_ious` (n,), the pairs' RLEs, and keys
        that name each detection and ground truth (a mask's band is computed once per call)."""
        dt_first = {key: index for index, key in reversed(list(enumerate(dt_keys)))}
        gt_first = {key: index for index, key in reversed(list(enumerate(gt_keys)))}
        dt_bands = dict(zip(dt_first, self.bands([dt_rles[index] for index in dt_first.values()])))
        gt_bands = dict(zip(gt_first, self.bands([gt_rles[index] for index in gt_first.values()])))
        out = np.array([band_iou(dt_bands[dt_key], gt_bands[gt_key]) for dt_key, gt_key in zip(dt_keys, gt_keys)],
                       np.float64).reshape(-1)
        return np.minimum(mask_ious, out)


def rle_counts(rle: dict) -> np.ndarray:
    """The run lengths (int64) of an RLE: its list, or the decoded string of a compressed RLE
    (pycocotools' `rleFrString`: 6-bit groups from character - 48, 5 value bits each, 0x20 = more
    to come, 0x10 in a value's last group = negative; from the fourth run on, a run is stored as
    its difference to the run two before)."""
    counts = rle["counts"]
    if isinstance(counts, list):
        return np.asarray(counts, np.int64)
    data = np.frombuffer(counts.encode("ascii") if isinstance(counts, str) else counts, np.uint8).astype(np.int64) - 48
    if not len(data):
        return np.zeros(0, np.int64)
    last = (data & 0x20) == 0  # a value's last group
    starts = np.flatnonzero(np.r_[True, last[:-1]])
    value_of = np.cumsum(np.r_[0, last[:-1].astype(np.int64)])
    shift = 5 * (np.arange(len(data)) - starts[value_of])
    values = np.bincount(value_of, weights=(data & 0x1F) << shift).astype(np.int64)
    negative = (data[last] & 0x10) != 0
    values[negative] |= -1 << (shift[last][negative] + 5)
    values[3::2] = np.cumsum(values[1::2])[1:]  # differences to the run two before, from the fourth run
    values[4::2] = np.cumsum(values[2::2])[1:]
    return values


def rle_crop(rle: dict, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """(height, width) uint8 pixels of an RLE's mask in the box [x0, y0, width, height], without
    decoding the whole image: an RLE is column-major, so the box's columns are one run of pixels."""
    image_height = int(rle["size"][0])
    counts = rle_counts(rle)
    ends = np.cumsum(counts)
    begin, end = x0 * image_height, (x0 + width) * image_height
    ones_start = np.clip((ends - counts)[1::2], begin, end) - begin  # runs of 1 are the odd ones
    ones_end = np.clip(ends[1::2], begin, end) - begin
    edges = np.bincount(ones_start, minlength=end - begin + 1) - np.bincount(ones_end, minlength=end - begin + 1)
    columns = (np.cumsum(edges)[:end - begin] > 0).astype(np.uint8).reshape(width, image_height)
    return np.ascontiguousarray(columns.T[y0:y0 + height])
