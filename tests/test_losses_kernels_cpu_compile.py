"""How the fused CPU kernels (suite.losses.kernels.cpu_compile) are built: once per process, by a
probe that calls them as training does, so that a training step builds nothing more; and where
torch.compile cannot build them, the losses warn once per kernel set and run the eager kernels,
with the same values. Neither needs the intra-op threads that tests/test_losses_kernels_cpu.py
(marked `threads`) is given, so both run beside the other tests."""

import json
import os
import subprocess
import sys

import torch
from torch._dynamo.utils import counters

from suite.losses import build_loss
from suite.losses.kernels import column_weighted_sigmoid_sum_cpu, seesaw_terms_cpu


def test_a_training_step_builds_no_kernel_after_the_probe():
    """torch.compile guards its code on grad mode, on the logits' requires_grad and on whether two
    arguments are one tensor; a probe that called the kernels otherwise than training does had every
    process build them twice (1 to 4 s of CPU each)."""
    torch._dynamo.reset()
    seesaw_terms_cpu.fused_cpu_kernels.cache_clear()
    column_weighted_sigmoid_sum_cpu.fused_cpu_kernels.cache_clear()
    assert seesaw_terms_cpu.fused_cpu_kernels() is not None
    assert column_weighted_sigmoid_sum_cpu.fused_cpu_kernels() is not None
    built = counters["stats"]["unique_graphs"]
    labels = torch.tensor([0, 1, 2, 6, 6, 3, 4, 5, 6, 0])
    for name, options in (("seesaw", {}), ("eqlv2", {}), ("fed", {"class_freq": [0.1] * 6})):
        loss = build_loss(name, 6, **options).train()
        logits = torch.randn(len(labels), loss.num_logits, requires_grad=True)
        sum(loss(logits, labels).values()).backward()
        assert counters["stats"]["unique_graphs"] == built, f"{name}: a training step built kernels again"


def test_without_a_compiler_the_eager_kernels_run_with_a_warning(tmp_path):
    # A real failed build: no C++ compiler where inductor looks (CXX) and an empty kernel cache.
    script = (
        "import json, warnings, torch\n"
        "from suite.losses.kernels import column_weighted_sigmoid_sum_cpu, seesaw_terms_cpu\n"
        "from suite.losses.kernels.column_weighted_sigmoid_sum import column_weighted_sigmoid_sum\n"
        "from suite.losses.kernels.seesaw_terms import seesaw_terms\n"
        "logits = torch.randn(64, 12, dtype=torch.float64)\n"
        "labels = torch.arange(64) % 11\n"
        "log_counts, weight = torch.rand(10, dtype=torch.float64), torch.rand(12, dtype=torch.float64)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    seesaw = seesaw_terms(logits, labels, log_counts)\n"
        "    column_weighted = column_weighted_sigmoid_sum(logits, labels, weight, weight, True)\n"
        "    asked = column_weighted_sigmoid_sum(logits, labels, weight, weight, True, fused=True)\n"
        "assert seesaw_terms_cpu.fused_cpu_kernels() is None\n"
        "assert column_weighted_sigmoid_sum_cpu.fused_cpu_kernels() is None\n"
        "eager = seesaw_terms(logits, labels, log_counts, compiled=False)\n"
        "assert all(torch.equal(a, b) for a, b in zip(seesaw, eager)), (seesaw, eager)\n"
        "eager = column_weighted_sigmoid_sum(logits, labels, weight, weight, True, fused=False)\n"
        "assert all(torch.equal(a, b) for a, b in zip(column_weighted, eager)), (column_weighted, eager)\n"
        "assert all(torch.equal(a, b) for a, b in zip(asked, eager)), (asked, eager)\n"
        "print(json.dumps([str(w.message) for w in caught if 'fused CPU kernels' in str(w.message)]))\n"
    )
    env = dict(os.environ, CXX=str(tmp_path / "no-such-c++"), TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "cache"))
    child = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    messages = json.loads(child.stdout.strip().splitlines()[-1])
    assert [message.split(":")[0] for message in messages] == ["seesaw", "eqlv2/fed"], messages
    for message in messages:
        assert "cannot build the fused CPU kernels" in message and "eager kernels run instead" in message
