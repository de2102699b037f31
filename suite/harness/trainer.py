"""Detectron2's DefaultTrainer with the LVIS evaluator, atomic checkpoints and a resume that
continues exactly where the checkpoint was taken (see suite.harness.run_state)."""

import logging
import os
import weakref

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import DefaultTrainer, HookBase, hooks
from detectron2.engine.train_loop import TrainerBase

from suite.d2 import check_roi_heads
from suite.evaluation.evaluate import DEFAULT_EVALUATOR, build_lvis_evaluator
from suite.harness.distributed import cpu_ddp
from suite.harness.run_state import LossCurve, RandomStates, TrainingTime
from suite.records import open_atomic, write_text_atomic

logger = logging.getLogger("suite.train")


class AtomicCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer whose checkpoint and `last_checkpoint` files are written to a
    temporary file and renamed: a process killed while saving leaves the previous checkpoint
    and a `last_checkpoint` that names a complete file."""

    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        self.logger.info("Saving checkpoint to %s", os.path.join(self.save_dir, basename))
        with open_atomic(os.path.join(self.save_dir, basename), "wb") as stream:
            torch.save(data, stream)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        write_text_atomic(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)


class SegmentClock(HookBase):
    """Times `train()` into the trainer's `TrainingTime` (kept in the checkpoints)."""

    def __init__(self, training_time: TrainingTime):
        self.training_time = training_time

    def before_train(self):
        self.training_time.start()

    def after_train(self):
        self.training_time.stop()

    def state_dict(self):
        return self.training_time.state_dict()

    def load_state_dict(self, state):
        self.training_time.load_state_dict(state)


class PluginTrainer(DefaultTrainer):
    """Detectron2's DefaultTrainer for the plugin's models: it refuses a config whose ROI head
    would ignore the plugin's keys, and trains on several CPU processes too (gloo: DDP without
    device_ids, suite.harness.distributed). `suite train`'s LongTailTrainer and
    scripts/train_net.py's Trainer add their evaluators to it."""

    def __init__(self, cfg):
        with cpu_ddp():
            super().__init__(cfg)

    @classmethod
    def build_model(cls, cfg):
        """DefaultTrainer's, after refusing a config whose ROI head would ignore the plugin's keys."""
        check_roi_heads(cfg)
        return super().build_model(cfg)


class LongTailTrainer(PluginTrainer):
    """PluginTrainer (hooks, checkpoints, progress printing, metrics.json) that evaluates with
    the LVIS evaluator of cfg.TEST.LVIS_EVALUATOR (with per-category AP), records the loss curve and the training time
    across segments, and resumes bit for bit on the CPU: the checkpoint also holds every
    process's random states, and the data loader is fast-forwarded by replaying the batches
    the run had consumed (the sampler is seeded from cfg.SEED, so it gives the same batches)."""

    def __init__(self, cfg):
        self.training_time = TrainingTime()  # before DefaultTrainer's __init__ builds the hooks that read them
        self.loss_curve = LossCurve()
        super().__init__(cfg)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        os.makedirs(output_folder, exist_ok=True)
        return build_lvis_evaluator(dataset_name, output_folder, cfg.TEST.DETECTIONS_PER_IMAGE,
                                    evaluator=cfg.TEST.get("LVIS_EVALUATOR", DEFAULT_EVALUATOR))

    def _is_checkpoint_iteration(self, iteration: int) -> bool:
        """When Detectron2's PeriodicCheckpointer saves (fvcore's rule)."""
        period = self.cfg.SOLVER.CHECKPOINT_PERIOD
        return (iteration + 1) % period == 0 or iteration >= self.max_iter - 1

    def build_hooks(self):
        self.checkpointer = AtomicCheckpointer(self._trainer.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.random_states = RandomStates(self._is_checkpoint_iteration)
        # Evaluation runs once, after training, from the harness (also for a run resumed at its
        # end), not from Detectron2's EvalHook, which would evaluate a second time. The suite's
        # hooks run before the checkpointer, so that a checkpoint holds this iteration's state.
        default = [hook for hook in super().build_hooks() if not isinstance(hook, hooks.EvalHook)]
        first_saver = next((index for index, hook in enumerate(default)
                            if isinstance(hook, hooks.PeriodicCheckpointer)), len(default))
        suite_hooks = [SegmentClock(self.training_time), self.loss_curve, self.random_states]
        return default[:first_saver] + suite_hooks + default[first_saver:]

    def state_dict(self):
        """Iteration, stateful hooks (LR scheduler, the suite's) and the optimizer. Detectron2
        v0.6's DefaultTrainer leaves the optimizer out (its SGD momentum was lost on resume);
        later versions save it the same way, under "_trainer"."""
        state = TrainerBase.state_dict(self)
        state["_trainer"] = self._trainer.state_dict()
        return state

    def load_state_dict(self, state):
        TrainerBase.load_state_dict(self, state)
        if "_trainer" in state:
            self._trainer.load_state_dict(state["_trainer"])

    def resume_or_load(self, resume=True):
        """As DefaultTrainer's; when resumed mid-run, also replay the data loader up to the
        checkpoint and restore the random states it was taken with."""
        super().resume_or_load(resume=resume)
        if 0 < self.start_iter < self.max_iter:
            data_loader = self._trainer._data_loader_iter
            for _ in range(self.start_iter):
                next(data_loader)
            restored = self.random_states.restore()
            logger.info("Resumed at iteration %d: replayed %d batches of the data loader%s", self.start_iter,
                        self.start_iter, "" if restored else " (the checkpoint has no random states: "
                        "the rest of the run will differ from an uninterrupted one)")

    @property
    def segments(self) -> int:
        return self.training_time.segments

    @property
    def wall_s(self) -> float:
        """Training time over all segments."""
        return self.training_time.wall_s
