"""What keeps the plugin honest on every Detectron2 version: its own loss switches refused, class
frequencies checked, a run's config read on the running version's defaults, the install named in
the environment record, `~` in DETECTRON2_DATASETS, and (on a source tree) the committed LVIS
image-count baseline."""

import os
from pathlib import Path

import detectron2
import pytest
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model

from suite.cli import main
from suite.d2 import class_freq_from_metadata
from suite.data.register import register_lvis_v1
from suite.environment import collect
from suite.harness.run_record import read_run_record

from d2_helpers import tiny_cfg, tiny_dataset
from data_helpers import lay_out_like_lvis_v1, small_set
from test_harness_cli import TINY
from test_harness_errors import SET


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("d2current"), prefix="d2current")


@pytest.mark.parametrize("key, equivalent", [("USE_SIGMOID_CE", "CLS_LOSS focal"), ("USE_FED_LOSS", "CLS_LOSS fed")])
def test_plugin_refuses_detectron2_loss_switches(dataset, key, equivalent):
    cfg = tiny_cfg(dataset, "ce")
    cfg.MODEL.ROI_BOX_HEAD[key] = True
    with pytest.raises(ValueError, match=f"MODEL.ROI_BOX_HEAD.{key} .* set MODEL.ROI_BOX_HEAD.{equivalent}"):
        build_model(cfg)


def metadata(name, counts, num_train_images=None):
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)
    fields = {"class_image_count": [{"id": category_id, "image_count": count} for category_id, count in counts]}
    if num_train_images is not None:
        fields["num_train_images"] = num_train_images
    MetadataCatalog.get(name).set(**fields)
    return name


def test_class_freq_from_sound_metadata():
    name = metadata("freq_ok", [(2, 10), (1, 40), (3, 1)], num_train_images=40)
    assert class_freq_from_metadata([name], 3) == [1.0, 0.25, 0.025]


@pytest.mark.parametrize("counts, num_train_images, message", [
    ([(1, 50), (2, 10)], 40, "class id 1 has frequency 1.25"),  # more images with a class than images
    ([(1, 0), (2, 10)], 40, "class id 1 has frequency 0 "),
    ([(1, 5), (2, 10)], None, "has no num_train_images"),  # Detectron2's builtin LVIS metadata
    ([(1, 5)], 40, "not exactly 1..2"),
    ([(2, 5), (3, 5)], 40, "not exactly 1..2"),
])
def test_class_freq_refuses_inconsistent_metadata(counts, num_train_images, message):
    name = metadata("freq_bad", counts, num_train_images)
    with pytest.raises(ValueError, match="DATASETS.TRAIN") as error:
        class_freq_from_metadata([name], 2)
    assert message in str(error.value)


def test_eval_reads_a_run_config_on_the_running_defaults(tmp_path):
    """A config.yaml without keys the running version has (as written by an older Detectron2, or
    an older suite) still evaluates: it is merged onto the running defaults."""
    data = tmp_path / "set"
    small_set(data, SET)
    run_dir = tmp_path / "run"
    assert main(["train", "--loss", "ce", "--dataset", str(data), "--output", str(run_dir), "--max-iter", "1",
                 *TINY]) == 0
    trained = read_run_record(run_dir)
    config = run_dir / "config.yaml"
    dropped = ("CHECK_LABELS", "RECORD_GRAD_BALANCE", "USE_SIGMOID_CE", "USE_FED_LOSS")
    config.write_text("".join(line for line in config.read_text().splitlines(keepends=True)
                              if line.strip().split(":")[0] not in dropped))
    assert main(["eval", "--run", str(run_dir)]) == 0
    assert read_run_record(run_dir)["metrics"] == trained["metrics"]


def test_environment_names_the_detectron2_install():
    install = collect()["detectron2_install"]
    assert install["version"] == detectron2.__version__ == collect()["detectron2"]
    assert Path(detectron2.__file__).resolve().parent == Path(install["path"]) / "detectron2"
    source = os.environ.get("SUITE_D2_SOURCE")
    if source:  # the d2-current tox environment: a source tree on the path, not a distribution
        assert Path(install["path"]) == Path(source).resolve() and install["distribution"] is None
    else:
        assert install["distribution"].endswith(detectron2.__version__) and install["commit"] is None
    install["path"] = "changed by a caller"  # found once per process, but a fresh dict for every record
    assert collect()["detectron2_install"]["path"] == str(Path(detectron2.__file__).resolve().parent.parent)


@pytest.mark.d2_source
def test_committed_lvis_baseline_is_what_the_source_trees_metadata_gives(capsys):
    """baselines/lvis_v1_image_counts.json equals what `suite data lvis-baseline` derives now from
    the source tree's metadata (its quantiles, statistics and the metadata files' sha256)."""
    assert main(["data", "lvis-baseline", "--check"]) == 0, capsys.readouterr().out


def test_detectron2_datasets_accepts_a_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    lay_out_like_lvis_v1(small_set(tmp_path / "set", SET), tmp_path / "datasets")
    monkeypatch.setenv("DETECTRON2_DATASETS", "~/datasets")
    registered = register_lvis_v1()
    assert registered.path == str((tmp_path / "datasets").resolve())


def test_code_version_is_read_once_per_process(monkeypatch):
    """A record names the commit the process started with: git is asked once, and callers get
    copies (a study that runs for hours while the checkout moves on still records its own code)."""
    from suite import environment

    asked = []
    monkeypatch.setattr(environment, "_git", lambda *args: asked.append(args) or "f00")
    environment._code_version.cache_clear()
    try:
        first = environment.code_version()
        first["git_commit"] = "changed by a caller"
        assert environment.code_version() == {"git_commit": "f00", "git_dirty": True}
        assert len(asked) == 2  # status and rev-parse, once
    finally:
        environment._code_version.cache_clear()
