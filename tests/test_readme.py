"""The README's quick start runs as written, in its fast forms: the four `suite` commands of its
"Quick start" block, each with the fast options below added (a 40-image set of 64 px images, two
training iterations), in a temporary folder instead of output/quick."""

import shlex
from pathlib import Path

from suite.cli import main

REPO = Path(__file__).resolve().parents[1]
FAST_OPTIONS = {
    ("data", "synth"): ["--images", "40", "--val-images", "8", "--classes", "6", "--size", "64"],
    ("train",): ["--max-iter", "2", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
                 "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "2",
                 "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "100",
                 "SOLVER.CHECKPOINT_PERIOD", "1000", "MODEL.ROI_BOX_HEAD.SEESAW.COMPILED", "False"],
}


def quick_start_commands(readme: str):
    """The `suite ...` lines of the first indented block after the "## Quick start" heading."""
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    block, started = [], False
    for line in section.splitlines():
        if line.startswith("    "):
            started = True
            block.append(line.strip())
        elif started and line.strip():
            break
    return [shlex.split(line) for line in block if line.startswith("suite ")]


def test_readme_is_a_front_page():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200
    for doc in ("losses", "plugin", "harness", "benchmarks", "reports", "records"):
        assert (REPO / "docs" / f"{doc}.md").is_file()


def test_quick_start_runs_in_its_fast_forms(tmp_path):
    commands = quick_start_commands((REPO / "README.md").read_text())
    assert [command[1] for command in commands] == ["data", "train", "eval", "report"]
    for command in commands:
        argv = [arg.replace("output/quick", str(tmp_path)) for arg in command[1:]]
        for prefix, options in FAST_OPTIONS.items():
            if tuple(argv[:len(prefix)]) == prefix:
                argv += options
        assert main(argv) == 0, argv
    assert (tmp_path / "seesaw" / "run.json").is_file()
    assert "seesaw" in (tmp_path / "report" / "README.md").read_text()
