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
is empty; erosion there treats outside the crop as background, which it is), and only for the
pairs that need them (`lvis_fast` asks for those whose mask IoU is >= 0.5).
"""

import math
from typing import Dict, Sequence, Tuple

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
    y0, x0, cropped = _cropped_band(mask, dilation_pixels(*mask.shape, dilation_ratio))
    full = np.zeros(mask.shape, bool)
    full[y0:y0 + cropped.shape[0], x0:x0 + cropped.shape[1]] = cropped
    return full


def _cropped_band(mask: np.ndarray, dilation: int) -> Band:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return 0, 0, np.zeros((0, 0), bool)
    y0, x0 = int(rows[0]), int(cols[0])
    crop = np.ascontiguousarray(mask[y0:rows[-1] + 1, x0:cols[-1] + 1], np.uint8)
    kernel = np.ones((2 * dilation + 1, 2 * dilation + 1), np.uint8)
    eroded = cv2.erode(crop, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return y0, x0, (crop > 0) & (eroded == 0)


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

    def band_of(self, rle: dict) -> Band:
        mask = mask_utils.decode(rle)
        return _cropped_band(mask, dilation_pixels(*mask.shape, self.dilation_ratio))

    def iou(self, mask_ious: np.ndarray, dt_rles: Sequence[dict], gt_rles: Sequence[dict],
            dt_keys: Sequence[int], gt_keys: Sequence[int]) -> np.ndarray:
        """(n,) min(mask IoU, band IoU) of n pairs: `mask_ious` (n,), the pairs' RLEs, and keys
        that name each detection and ground truth (a mask's band is computed once per call)."""
        dt_bands: Dict[int, Band] = {}
        gt_bands: Dict[int, Band] = {}
        out = np.empty(len(mask_ious))
        for index, (dt_rle, gt_rle, dt_key, gt_key) in enumerate(zip(dt_rles, gt_rles, dt_keys, gt_keys)):
            if dt_key not in dt_bands:
                dt_bands[dt_key] = self.band_of(dt_rle)
            if gt_key not in gt_bands:
                gt_bands[gt_key] = self.band_of(gt_rle)
            out[index] = band_iou(dt_bands[dt_key], gt_bands[gt_key])
        return np.minimum(mask_ious, out)
