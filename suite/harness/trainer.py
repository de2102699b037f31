"""Detectron2's DefaultTrainer with the LVIS evaluator and the suite's training record."""

import os
import time

from detectron2.engine import DefaultTrainer, hooks

from suite.harness.evaluate import build_lvis_evaluator


class LongTailTrainer(DefaultTrainer):
    """DefaultTrainer (hooks, checkpoints, progress printing, metrics.json) that evaluates with
    the official `lvis` API (with per-category AP) and measures the wall time of the iterations
    it runs."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        os.makedirs(output_folder, exist_ok=True)
        return build_lvis_evaluator(dataset_name, output_folder, cfg.TEST.DETECTIONS_PER_IMAGE)

    def build_hooks(self):
        # Evaluation runs once, after training, from the harness (also for a run resumed at its
        # end), not from Detectron2's EvalHook, which would evaluate a second time.
        return [hook for hook in super().build_hooks() if not isinstance(hook, hooks.EvalHook)]

    def train(self):
        """Train from `start_iter` (> 0 when resumed) to `max_iter`; sets `wall_s` and `iterations_run`."""
        self.iterations_run = max(self.max_iter - self.start_iter, 0)
        start = time.perf_counter()
        result = super().train()
        self.wall_s = time.perf_counter() - start
        return result
