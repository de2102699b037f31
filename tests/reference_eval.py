"""Runs a reference implementation of an LVIS protocol in its own process, for the equality tests
of tests/test_evaluation_protocols.py (the references are source trees, not packages: their
`lvis` must not meet the installed one).

    python tests/reference_eval.py devil-fixed|devil-pooled GT_JSON RESULTS_JSON TYPE DETS_PER_CAT OUT_NPZ
        large-vocab-devil's scripts/evaluate_ap_fixed.py or evaluate_ap_pooled.py, run as they are
        (their `main()` with these arguments; the tree on PYTHONPATH); the evaluation object they
        build is kept to save its precision and results.
    python tests/reference_eval.py challenge GT_JSON RESULTS_JSON OUT_NPZ
        the lvis-api `lvis_challenge_2021` branch's LVISEval(mode="challenge2021") (the tree first on
        PYTHONPATH).
    python tests/reference_eval.py band MASKS_NPZ DILATION_RATIO OUT_NPZ
        that branch's `boundary_utils.mask_to_boundary` of each mask.

OUT_NPZ holds `precision` (or `bands`) and `results` (the summary as JSON).
"""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np


def _save(path, precision, results):
    np.savez(path, precision=precision, results=json.dumps({k: float(v) for k, v in results.items()}))


def devil(which, gt_json, results_json, iou_type, dets_per_cat, out):
    from suite.evaluation import lvis_numpy2

    lvis_numpy2.install()  # the installed lvis 0.5.3 on NumPy 2
    import lvdevil.eval_wrapper

    lvis_numpy2.patch(lvdevil.eval_wrapper)  # its LVISPooledEval.accumulate uses np.float too
    script = "evaluate_ap_fixed" if which == "devil-fixed" else "evaluate_ap_pooled"
    root = Path(list(lvdevil.__path__)[0]).resolve().parent  # a namespace package: no __file__
    spec = importlib.util.spec_from_file_location(script, root / "scripts" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    name = "LVISEval" if which == "devil-fixed" else "LVISPooledEval"
    built = []

    class Kept(getattr(module, name)):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    setattr(module, name, Kept)
    sys.argv = [script, gt_json, results_json, str(Path(out).parent / f"{script}-log"), "--type", iou_type,
                "--dets-per-cat", str(dets_per_cat)]
    module.main()
    _save(out, built[0].eval["precision"], built[0].results)


def challenge(gt_json, results_json, out):
    from lvis import LVIS, LVISEval

    lvis_eval = LVISEval(LVIS(gt_json), json.loads(Path(results_json).read_text()), mode="challenge2021",
                         max_cpu_num=1)
    lvis_eval.run()
    _save(out, lvis_eval.eval["precision"], lvis_eval.results)


def band(masks_npz, dilation_ratio, out):
    from lvis.boundary_utils import mask_to_boundary

    masks = np.load(masks_npz)["masks"]
    np.savez(out, bands=np.stack([mask_to_boundary(mask, float(dilation_ratio)) for mask in masks]))


if __name__ == "__main__":
    command, arguments = sys.argv[1], sys.argv[2:]
    if command in ("devil-fixed", "devil-pooled"):
        devil(command, *arguments)
    elif command == "challenge":
        challenge(*arguments)
    elif command == "band":
        band(*arguments)
    else:
        sys.exit(f"unknown command {command}")
