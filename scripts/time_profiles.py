"""Time a study cell's training step on the default study set and on the LVIS profile, side by
side: `suite train` for ITERATIONS iterations on each training split (the validation split cut to
8 images: it does not enter a training step), with the study's fine-tuning settings and each
profile's input size; then each run's seconds per iteration over all its iterations (its run
record) and in steady state (`time` of Detectron2's last metrics line: the median over its
logging window, which leaves out the first iterations).

    OMP_NUM_THREADS=1 python scripts/time_profiles.py OUT [--iterations 20] [--classes K]

Prints one JSON line per profile and the ratios of their seconds per iteration; the steady-state
ratio sets the LVIS profile's iteration count (suite.workflows.study, docs/data-stats.md).
"""

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from suite.cli import main
from suite.data.synth import LVIS_PROFILE_CLASSES, generate, lvis_profile_spec
from suite.environment import collect
from suite.workflows.study import PROFILES, schedule_overrides


def time_profile(name: str, spec, out: Path, iterations: int) -> dict:
    data = out / f"{name}-data"
    if not data.exists():
        generate(spec, data)
    run_dir = out / f"{name}-run"
    overrides = schedule_overrides(iterations, pretrained=True) + PROFILES[name].input_overrides()
    code = main(["train", "--loss", "seesaw", "--dataset", str(data), "--output", str(run_dir), "--max-iter",
                 str(iterations), "--seed", "0", *overrides])
    if code != 0:
        raise SystemExit(code)
    train = json.loads((run_dir / "run.json").read_text())["train"]
    last = json.loads((run_dir / "metrics.json").read_text().splitlines()[-1])
    return {"profile": name, "image_size": spec.image_size, "classes": spec.num_classes,
            "train_images": spec.num_train_images, "iterations": iterations, "s_per_iter": 1 / train["iters_per_s"],
            "steady_s_per_iter": last["time"], "wall_s": train["wall_s"]}


def main_script() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for the two sets and runs (created)")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--classes", type=int, default=LVIS_PROFILE_CLASSES, help="the LVIS profile's classes")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    specs = {"default": replace(PROFILES["default"].set_spec(), num_val_images=8, min_val_images=1),
             "lvis": lvis_profile_spec(num_classes=args.classes, num_val_images=8, min_val_images=1)}
    rows = [time_profile(name, spec, args.out, args.iterations) for name, spec in specs.items()]
    environment = collect()
    for row in rows:
        print(json.dumps({**row, "cpu": environment["cpu"], "threads": environment["num_threads"],
                          "commit": environment["git_commit"], "dirty": environment["git_dirty"],
                          "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
    for key in ("s_per_iter", "steady_s_per_iter"):
        print(f"lvis / default {key}: {rows[1][key] / rows[0][key]:.3f}")


if __name__ == "__main__":
    main_script()
