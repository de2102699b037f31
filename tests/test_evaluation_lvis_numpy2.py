"""Detectron2's own LVISEvaluator on NumPy 2 in this environment: the .pth that
scripts/bootstrap.sh installs gives lvis.eval (only it) NumPy's removed `np.float`. A fresh
interpreter that never imports the suite evaluates ground-truth boxes as detections."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from data_helpers import small_set
from suite.evaluation import lvis_numpy2

REPO = Path(__file__).resolve().parents[1]

EVALUATE_GROUND_TRUTH = textwrap.dedent("""
    import json, sys
    import numpy as np
    import torch
    from detectron2.data import MetadataCatalog
    from detectron2.evaluation import LVISEvaluator
    from detectron2.structures import Boxes, Instances

    json_file = sys.argv[1]
    data = json.load(open(json_file))
    MetadataCatalog.get("numpy2_gt").set(json_file=json_file)
    evaluator = LVISEvaluator("numpy2_gt", distributed=False)
    evaluator.reset()
    for image in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        instances = Instances((image["height"], image["width"]))
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                             dtype=torch.float32).reshape(-1, 4)
        instances.pred_boxes = Boxes(boxes)
        instances.scores = torch.ones(len(anns))
        instances.pred_classes = torch.tensor([a["category_id"] - 1 for a in anns], dtype=torch.int64)
        evaluator.process([{"image_id": image["id"]}], [{"instances": instances}])
    results = evaluator.evaluate()
    import lvis.eval
    print(json.dumps({"AP": results["bbox"]["AP"], "numpy_has_float": "float" in np.__dict__,
                      "lvis_np": type(lvis.eval.np).__name__}))
""")


def test_detectron2_lvis_evaluator_runs_in_a_fresh_interpreter(tmp_path):
    layout = small_set(tmp_path / "set")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    assert lvis_numpy2.pth_path().is_file(), \
        "run scripts/bootstrap.sh (python -m suite.evaluation.lvis_numpy2 --install)"
    done = subprocess.run([sys.executable, "-c", EVALUATE_GROUND_TRUTH, str(layout.split("val").json_file)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["AP"] == 100.0  # every ground-truth box detected at score 1
    assert result == {"AP": 100.0, "numpy_has_float": False, "lvis_np": "NumpyWithFloat"}


def test_the_view_adds_float_and_leaves_numpy_alone():
    view = lvis_numpy2.NumpyWithFloat(np)
    assert view.float is float and view.cumsum is np.cumsum and view.float64 is np.float64
    assert "float" not in np.__dict__
    assert np.cumsum(np.array([[1, 0, 1]]), axis=1).astype(dtype=view.float).dtype == np.float64


def test_install_patches_lvis_eval_once():
    lvis_numpy2.install()
    lvis_numpy2.install()
    import lvis.eval

    assert sum(isinstance(finder, lvis_numpy2.LvisEvalFinder) for finder in sys.meta_path) == 1
    assert isinstance(lvis.eval.np, lvis_numpy2.NumpyWithFloat) and lvis.eval.np.float is float


def test_pth_line_runs_as_site_runs_it(tmp_path):
    """The .pth line is one `import` statement line that site executes; run it where the suite is
    importable and where it is not."""
    assert lvis_numpy2.PTH_LINE.startswith("import ") and lvis_numpy2.PTH_LINE.count("\n") == 1
    probe = lvis_numpy2.PTH_LINE + "import sys; print(any(type(f).__name__ == 'LvisEvalFinder' for f in sys.meta_path))\n"
    with_suite = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {str(REPO)!r})\n" + probe],
                                capture_output=True, text=True, timeout=60)
    bare_env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    without = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, timeout=60,
                             cwd=tmp_path, env=bare_env)
    assert with_suite.stdout.strip() == "True", with_suite.stderr
    assert without.returncode == 0 and without.stdout.strip() == "False", without.stderr
