"""The records' schema, one home for the writers and the readers (docs/records.md): each record's
kind and file name, the fields a reader requires, and the metric names.

Torch-free: the report imports it as the harness, the evaluation and the benchmarks do.
"""

#: Every record carries it; readers refuse another.
SCHEMA_VERSION = 1

# Kinds, and the file each is written to where the name is fixed.
RUN_KIND = "train_run"  # RUN_DIR/run.json, suite.harness.run_record
BOOTSTRAP_KIND = "ap_bootstrap"  # RUN_DIR/bootstrap.json, suite.evaluation.bootstrap
STUDY_KIND = "study"  # OUT/study.json, suite.workflows.study
STUDY_JOBS_KIND = "study_jobs"  # OUT/jobs.json, suite.workflows.study_jobs
DATASET_STATS_KIND = "dataset_stats"  # suite data stats
BENCH_KERNEL_KIND = "bench_kernel"  # suite bench kernel
BENCH_STEP_KIND = "bench_step"  # suite bench step
BENCH_EVAL_KIND = "bench_eval"  # suite bench eval
BENCH_KINDS = (BENCH_KERNEL_KIND, BENCH_STEP_KIND, BENCH_EVAL_KIND)
RUN_RECORD = "run.json"
BOOTSTRAP_RECORD = "bootstrap.json"
STUDY_RECORD = "study.json"
STUDY_JOBS_RECORD = "jobs.json"

# Metrics: the LVIS API's AP summary per task, in percent.
TASKS = ("bbox", "segm")
AP_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
#: AP of the rare, common and frequent classes.
FREQUENCY_METRICS = ("APr", "APc", "APf")
#: AP overall and per frequency group: what the tables, the paired comparisons and the bootstrap carry.
GROUP_METRICS = ("AP", *FREQUENCY_METRICS)
# Evaluation protocols (suite.evaluation.protocols): the standard one's metrics are run.json's
# `metrics`; another's are under `metric_protocols`, and a results dict or bootstrap record holds
# its tasks under result_key.
STANDARD_PROTOCOL = "standard"


def result_key(task: str, protocol: str) -> str:
    """Where an evaluation's results dict holds `task` under `protocol`: the task itself for the
    standard protocol (Detectron2's keys), else "<task>-<protocol>", e.g. "segm-fixed"."""
    return task if protocol == STANDARD_PROTOCOL else f"{task}-{protocol}"


# run.json: the top-level fields and those of its parts.
RUN_FIELDS = ("loss", "dataset", "config", "config_hash", "iterations", "seed", "metrics", "per_category",
              "train", "grad_balance", "environment", "finished_at")
#: Written since a later version of the harness; older records lack them and still read.
RUN_LATER_FIELDS = ("metric_protocols", "setting")
LOSS_FIELDS = ("name", "params")
#: run.json's `setting` (suite.harness.run_record.trained_setting), and each of its box predictors.
SETTING_FIELDS = ("box_predictors", "pretrained", "schedule", "evaluator")
BOX_PREDICTOR_FIELDS = ("cosine_scale", "num_logits")
# A loss's parameters that choose how it is computed, not what (Seesaw's `compiled`: the fused or
# the eager kernels, equal up to rounding): the loss class declares them from here
# (`implementation_params`), and the report takes runs that differ only in them for seeds of one arm.
IMPLEMENTATION_PARAMS = {"seesaw": ("compiled",)}
DATASET_FIELDS = ("name", "path", "num_classes", "num_train_images")
CATEGORY_FIELDS = ("id", "name", "frequency", "image_count", "instance_count", "bbox_AP", "segm_AP")
TRAIN_FIELDS = ("start_iter", "wall_s", "iters_per_s", "loss_curve")
GRAD_BALANCE_FIELDS = ("class_ids", "pos_grad", "neg_grad")
#: suite.environment.collect's fields that every record's `environment` holds.
ENVIRONMENT_FIELDS = ("python", "torch", "torchvision", "detectron2", "cuda", "device_name", "cpu", "num_threads",
                      "platform", "git_commit", "git_dirty")

# Benchmark files: `environment` and `records`, one entry per measurement.
BENCH_FIELDS = ("name", "scope", "device", "dtype", "num_rois", "num_classes", "median_ms", "iqr_ms", "repeats",
                "ratio_to_ce", "ratio_to_floor", "ratio_to_official")
#: bench_step entries hold these too.
STEP_FIELDS = ("iters_per_s", "loss_share")
#: bench_eval entries (suite.bench.eval_scale): one per task, image count and evaluator.
EVAL_FIELDS = ("name", "evaluator", "task", "num_images", "evaluate_s", "accumulate_s", "bootstrap_s",
               "bootstrap_resamples", "bootstrap_timed_resamples", "total_s", "peak_rss_gib", "loadavg_before")
EVAL_NUMBERS = ("num_images", "evaluate_s", "accumulate_s", "bootstrap_s", "total_s", "peak_rss_gib")

#: The fields a study's own reader requires of study.json, and those of its jobs record.
STUDY_FIELDS = ("protocol", "wall_s")
STUDY_JOBS_FIELDS = ("executor", "jobs")
