"""User errors of `suite train`/`suite eval` are one line on stderr and exit 2, before anything
is written: --output naming a file, weights that cannot be had, machines that cannot form a run,
Detectron2's own loss switches."""

import subprocess
import sys

import pytest

from suite.cli import main
from suite.data.synth import SynthSpec

from data_helpers import small_set
from test_harness_cli import TINY, one_error_line

SET = SynthSpec(num_train_images=20, num_val_images=4, num_classes=4, image_size=64, seed=2, min_val_images=1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors") / "set"
    small_set(root, SET)
    return root


def train(dataset, output, *extra):
    return main(["train", "--loss", "ce", "--dataset", str(dataset), "--output", str(output), "--max-iter", "1",
                 *TINY, *extra])


def test_output_naming_a_file(dataset, tmp_path, capsys):
    output = tmp_path / "notes.txt"
    output.write_text("mine")
    assert train(dataset, output) == 2
    one_error_line(capsys, f"--output {output} is a file")
    assert output.read_text() == "mine"


def test_weights_that_cannot_be_downloaded(dataset, tmp_path, capsys):
    url = "http://127.0.0.1:9/ImageNetPretrained/R-50.pkl"  # nothing listens on the discard port
    assert train(dataset, tmp_path / "run", "MODEL.WEIGHTS", url) == 2
    one_error_line(capsys, f"MODEL.WEIGHTS {url}: cannot download {url}", "MODEL.WEIGHTS /path/to/R-50.pkl")
    assert not (tmp_path / "run").exists()


def test_weights_file_that_does_not_exist(dataset, tmp_path, capsys):
    assert train(dataset, tmp_path / "run", "MODEL.WEIGHTS", str(tmp_path / "R-50.pkl")) == 2
    one_error_line(capsys, f"MODEL.WEIGHTS {tmp_path / 'R-50.pkl'}: no such file")


@pytest.mark.parametrize("machines, fragment", [
    (["--num-machines", "2"], "--num-machines 2 needs --dist-url tcp://HOST:PORT of machine 0"),
    (["--num-machines", "2", "--machine-rank", "2", "--dist-url", "tcp://127.0.0.1:9"], "a rank below --num-machines"),
    (["--num-gpus", "0"], "at least one process")])
def test_machines_that_cannot_form_a_run(dataset, tmp_path, capsys, machines, fragment):
    assert train(dataset, tmp_path / "run", *machines) == 2
    one_error_line(capsys, fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("key, equivalent", [("USE_SIGMOID_CE", "CLS_LOSS focal"), ("USE_FED_LOSS", "CLS_LOSS fed")])
def test_detectron2_loss_switches_are_refused(dataset, tmp_path, capsys, key, equivalent):
    assert train(dataset, tmp_path / "run", f"MODEL.ROI_BOX_HEAD.{key}", "True") == 2
    one_error_line(capsys, f"MODEL.ROI_BOX_HEAD.{key}", equivalent)
    assert not (tmp_path / "run").exists()


def test_error_output_is_one_line_without_detectron2_warnings(tmp_path):
    """In a fresh process Detectron2's import warns about torch.jit.script; none of it reaches stderr."""
    result = subprocess.run([sys.executable, "-m", "suite", "train", "--loss", "ce", "--dataset",
                             str(tmp_path / "missing"), "--output", str(tmp_path / "run")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("suite train: error:"), result.stderr
