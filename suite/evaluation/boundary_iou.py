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

import functools
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
    """The band of a mask given by its bounding box's pixels `crop` (outside it: background).
    The erosion by a square commutes with transposing, so a column-major crop (as `rle_crops`
    gives) is eroded as its transpose, which OpenCV reads without a copy."""
    if crop.size == 0 or _is_thin(*crop.shape, dilation):
        return crop > 0
    crop = crop.astype(np.uint8, copy=False)
    transposed = crop.strides[-1] != crop.itemsize
    source = crop.T if transposed else crop
    eroded = cv2.erode(source, _square(dilation), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (crop > 0) & ((eroded.T if transposed else eroded) == 0)


@functools.lru_cache(maxsize=None)
def _square(dilation: int) -> np.ndarray:
    return np.ones((2 * dilation + 1, 2 * dilation + 1), np.uint8)


def _is_thin(height, width, dilation):
    """Whether a mask whose bounding box is `height` x `width` is its own band: an erosion by a
    square of side 2 * dilation + 1 leaves nothing of a box narrower than that."""
    return np.minimum(height, width) < 2 * dilation + 1


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
        """The cropped band of each RLE, each decoded on its bounding box only."""
        boxes = mask_utils.toBbox(list(rles)).astype(np.int64).reshape(-1, 4) if len(rles) else np.zeros((0, 4), int)
        bands = []
        for rle, box, crop in zip(rles, boxes, rle_crops(rles, boxes)):
            dilation = dilation_pixels(int(rle["size"][0]), int(rle["size"][1]), self.dilation_ratio)
            bands.append((int(box[1]), int(box[0]), _band_of_crop(crop, dilation)))
        return bands

    def iou(self, mask_ious: np.ndarray, dt_rles: Sequence[dict], gt_rles: Sequence[dict],
            dt_keys: Sequence[int], gt_keys: Sequence[int]) -> np.ndarray:
        """(n,) min(mask IoU, band IoU) of n pairs: `mask_ious` (n,), the pairs' RLEs, and keys
        that name each detection and ground truth (a mask's band is computed once per call).
        Where both masks are thin (`_is_thin`: each is its own band) the band IoU is the mask IoU,
        the same integer ratio, and is not computed again."""
        mask_ious = np.asarray(mask_ious, np.float64).reshape(-1)
        both_thin = self._thin(dt_rles) & self._thin(gt_rles)
        pairs = np.flatnonzero(~both_thin)
        dt_first = {dt_keys[index]: index for index in pairs[::-1]}
        gt_first = {gt_keys[index]: index for index in pairs[::-1]}
        dt_bands = dict(zip(dt_first, self.bands([dt_rles[index] for index in dt_first.values()])))
        gt_bands = dict(zip(gt_first, self.bands([gt_rles[index] for index in gt_first.values()])))
        out = mask_ious.copy()
        out[pairs] = np.minimum(mask_ious[pairs], np.array(
            [band_iou(dt_bands[dt_keys[index]], gt_bands[gt_keys[index]]) for index in pairs], np.float64))
        return out

    def _thin(self, rles: Sequence[dict]) -> np.ndarray:
        """(n,) whether each RLE's mask is thin (`_is_thin` at its image's dilation)."""
        if not len(rles):
            return np.zeros(0, bool)
        boxes = mask_utils.toBbox(list(rles)).reshape(-1, 4)
        sizes = np.array([rle["size"] for rle in rles], np.int64).reshape(-1, 2)
        dilation = np.array([dilation_pixels(int(h), int(w), self.dilation_ratio) for h, w in sizes], np.int64)
        return _is_thin(boxes[:, 3], boxes[:, 2], dilation)


def rle_counts(rles: Sequence[dict]) -> Tuple[np.ndarray, np.ndarray]:
    """The run lengths of several RLEs at once: (counts int64 concatenated, (n + 1,) offsets of each
    RLE's runs). A compressed RLE's string is read as pycocotools' `rleFrString` does: 6-bit
    groups from character - 48, 5 value bits each, 0x20 = more to come, 0x10 in a value's last
    group = negative; from the fourth run on, a run is stored as its difference to the run two
    before. An uncompressed RLE (a list) is taken as it is."""
    strings = [rle["counts"].encode("ascii") if isinstance(rle["counts"], str) else rle["counts"] for rle in rles]
    compressed = np.array([not isinstance(counts, list) for counts in strings], bool)
    per_rle: List[np.ndarray] = [np.zeros(0, np.int64)] * len(rles)
    if compressed.any():
        chosen = np.flatnonzero(compressed)
        lengths = np.array([len(strings[index]) for index in chosen], np.int64)
        data = np.frombuffer(b"".join(strings[index] for index in chosen), np.uint8).astype(np.int64) - 48
        last = (data & 0x20) == 0  # a value's last group (a string ends with one)
        starts = np.flatnonzero(np.r_[True, last[:-1]]) if len(data) else np.zeros(0, np.int64)
        value_of = np.cumsum(np.r_[0, last[:-1].astype(np.int64)]) if len(data) else np.zeros(0, np.int64)
        shift = 5 * (np.arange(len(data)) - starts[value_of])
        values = np.bincount(value_of, weights=(data & 0x1F) << shift, minlength=int(last.sum())).astype(np.int64)
        negative = (data[last] & 0x10) != 0
        values[negative] |= -1 << (shift[last][negative] + 5)
        owner = np.repeat(np.arange(len(chosen)), lengths)[last]  # the RLE of each value
        count_per = np.bincount(owner, minlength=len(chosen))
        local = np.arange(len(values)) - np.repeat(np.cumsum(count_per) - count_per, count_per)
        # from the fourth run on: run m += run m - 2, i.e. a running sum per (RLE, parity) from run 1 and run 2
        summed = np.flatnonzero(local >= 1)
        order = summed[np.lexsort((local[summed], local[summed] % 2, owner[summed]))]
        segment = owner[order] * 2 + local[order] % 2
        running = np.cumsum(values[order])
        first = np.r_[True, segment[1:] != segment[:-1]] if len(order) else np.zeros(0, bool)
        base = (running - values[order])[first]
        values[order] = running - np.repeat(base, np.diff(np.r_[np.flatnonzero(first), len(order)]))
        for index, piece in zip(chosen, np.split(values, np.cumsum(count_per)[:-1])):
            per_rle[index] = piece
    for index in np.flatnonzero(~compressed):
        per_rle[index] = np.asarray(strings[index], np.int64)
    offsets = np.r_[0, np.cumsum([len(piece) for piece in per_rle])].astype(np.int64)
    return (np.concatenate(per_rle) if per_rle else np.zeros(0, np.int64)), offsets


_CROP_CHUNK = 1 << 22  # pixels decoded at once (bounded memory)


def rle_crops(rles: Sequence[dict], boxes: np.ndarray) -> List[np.ndarray]:
    """For each RLE its (h, w) uint8 pixels in its box [x0, y0, w, h] (boxes (n, 4) int), without
    decoding whole images: an RLE is column-major, so a box's columns are one stretch of pixels;
    the stretches of many RLEs are decoded together."""
    counts, offsets = rle_counts(rles)
    heights = np.array([int(rle["size"][0]) for rle in rles], np.int64)
    x0, y0, width, height = (boxes[:, column].astype(np.int64) for column in range(4)) if len(rles) else \
        (np.zeros(0, np.int64),) * 4
    strip = width * heights  # pixels of each box's columns
    crops: List[np.ndarray] = []
    start = 0
    while start < len(rles):
        stop = start + 1
        while stop < len(rles) and strip[start:stop + 1].sum() <= _CROP_CHUNK:
            stop += 1
        crops += _decode_strips(counts[offsets[start]:offsets[stop]], offsets[start:stop + 1] - offsets[start],
                                x0[start:stop] * heights[start:stop], strip[start:stop], heights[start:stop],
                                y0[start:stop], height[start:stop], width[start:stop])
        start = stop
    return crops


def _decode_strips(counts, offsets, begin, strip, heights, y0, height, width) -> List[np.ndarray]:
    """The crops of RLEs whose runs are `counts` (split by `offsets`), each from its stretch of
    `strip` pixels starting at flat index `begin`: every run clipped to its stretch, then repeated."""
    count_per = np.diff(offsets)
    owner = np.repeat(np.arange(len(strip)), count_per)
    ends = np.cumsum(counts)
    ends -= np.repeat(np.r_[0, ends[offsets[1:-1] - 1]] if len(strip) > 1 else np.zeros(1, np.int64), count_per)
    low, high = begin[owner], begin[owner] + strip[owner]
    lengths = np.clip(ends, low, high) - np.clip(ends - counts, low, high)
    value = ((np.arange(len(counts)) - np.repeat(offsets[:-1], count_per)) % 2).astype(np.uint8)  # 0s, 1s, ...
    pixels = np.repeat(value, lengths)
    out_start = np.r_[0, np.cumsum(strip)]
    return [pixels[out_start[k]:out_start[k + 1]].reshape(int(width[k]), int(heights[k])).T[
        int(y0[k]):int(y0[k]) + int(height[k])] for k in range(len(strip))]
