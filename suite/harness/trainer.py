"""Detectron2's DefaultTrainer with the LVIS evaluator and the suite's training record."""

import logging
import os
import time

from detectron2.engine import DefaultTrainer
from detectron2.evaluation import LVISEvaluator

logger = logging.getLogger("suite.train")


class LongTailTrainer(DefaultTrainer):
    """DefaultTrainer (hooks, checkpoints, progress printing, metrics.json) that evaluates with
    the official `lvis` API and measures the wall time of the iterations it runs."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return LVISEvaluator(dataset_name, output_dir=output_folder,
                             max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE)

    def train(self):
        """Train from `start_iter` to `max_iter`; sets `wall_s` and `iterations_run`."""
        self.iterations_run = max(self.max_iter - self.start_iter, 0)
        start = time.perf_counter()
        result = super().train()
        self.wall_s = time.perf_counter() - start
        return result
