"""One run on two "machines": two `suite train` processes (and two `scripts/train_net.py`
processes) with `--num-machines 2 --machine-rank 0|1 --dist-url tcp://127.0.0.1:PORT`, one
process each, gloo over the loopback address, each with its own output folder as on machines
without a shared disk. Seesaw's counts are the sum over both machines' images, both ranks end
with bit-identical weights (the run record's digest of each rank's state, equal to the saved
checkpoint's), and only machine 0 writes the run record and checkpoints."""

import os
import subprocess
import sys

import pytest
import torch

from suite.harness.distributed import free_port, tensors_sha256
from suite.harness.run_record import read_run_record
from suite.harness.train import load_run_cfg
from suite.harness.trainer import LongTailTrainer
from suite.report.group_balance import SEESAW_COUNTS_KEY

from data_helpers import RUN_SET, small_set
from test_d2_tools import LAZY_TINY
from test_harness_cli import TINY
from test_harness_resume import REPO, stopped_on_exit

PROCESS_TIMEOUT_S = 300


def tiny(name: str) -> int:
    """TINY's value of a config key."""
    return int(TINY[TINY.index(name) + 1])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    small_set(root, RUN_SET)
    return root


def run_machines(command, tmp_path):
    """Start `command(rank, port)` (an argv) for machine ranks 0 and 1, wait for both; their
    stderr, or the assertion naming the machine that failed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    port = free_port()
    processes = [subprocess.Popen([sys.executable, *command(rank, port)], cwd=tmp_path, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    errors = []
    for rank, process in enumerate(processes):
        with stopped_on_exit(process):
            _, err = process.communicate(timeout=PROCESS_TIMEOUT_S)
            assert process.returncode == 0, f"machine {rank}: {err[-3000:]}"
            errors.append(err)
    return errors


def machine_args(rank: int, port: int):
    return ["--num-machines", "2", "--machine-rank", str(rank), "--dist-url", f"tcp://127.0.0.1:{port}"]


def assert_one_run_on_two_ranks(record, machine0, machine1, rois_per_image: int, images_per_step: int):
    """Two ranks with equal final weights; counts over both machines' images; one record."""
    assert record["train"]["world_size"] == 2
    first, second = record["train"]["weights_sha256"]
    assert first == second
    state = torch.load(machine0 / "model_final.pth", weights_only=True)["model"]
    # Every sampled RoI is counted once: BATCH_SIZE_PER_IMAGE per image of the global batch
    # (IMS_PER_BATCH, split between the machines), not of one machine's half.
    counts = state[SEESAW_COUNTS_KEY]
    assert counts.sum().item() == rois_per_image * images_per_step
    assert not (machine1 / "run.json").exists() and not list(machine1.glob("*.pth"))


def test_suite_train_on_two_machines(dataset, tmp_path):
    outputs = [tmp_path / f"machine{rank}" for rank in (0, 1)]
    run_machines(lambda rank, port: [
        "-m", "suite", "train", "--loss", "seesaw", "--dataset", str(dataset), "--output", str(outputs[rank]),
        "--max-iter", "1", *machine_args(rank, port), *TINY], tmp_path)
    record = read_run_record(outputs[0])
    assert record["loss"]["name"] == "seesaw" and record["iterations"] == 1
    assert_one_run_on_two_ranks(record, *outputs, rois_per_image=tiny("MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE"),
                                images_per_step=tiny("SOLVER.IMS_PER_BATCH"))
    assert not (outputs[1] / "config.yaml").exists()
    # The digest is the saved weights' (the parameters of the run's model, by name).
    state = torch.load(outputs[0] / "model_final.pth", weights_only=True)["model"]
    model = LongTailTrainer.build_model(load_run_cfg(outputs[0] / "config.yaml"))
    assert record["train"]["weights_sha256"][0] == tensors_sha256({name: state[name] for name, _ in model.named_parameters()})


def test_train_net_lazy_config_on_two_machines(dataset, tmp_path):
    outputs = [tmp_path / f"machine{rank}" for rank in (0, 1)]
    config = REPO / "configs" / "lazy" / "mask_rcnn_R_50_FPN_2x_seesaw.py"
    run_machines(lambda rank, port: [
        str(REPO / "scripts" / "train_net.py"), "--config-file", str(config), "--dataset", str(dataset),
        *machine_args(rank, port), *LAZY_TINY, "model.roi_heads.box_predictor.loss_params={compiled:false}",
        f"train.output_dir={outputs[rank]}", f"train.eval_period={10 ** 6}"], tmp_path)
    record = read_run_record(outputs[0])
    assert record["loss"]["name"] == "seesaw" and record["iterations"] == 1
    assert_one_run_on_two_ranks(record, *outputs, rois_per_image=32, images_per_step=2)
    assert "model.roi_heads.batch_size_per_image=32" in LAZY_TINY and "dataloader.train.total_batch_size=2" in LAZY_TINY
