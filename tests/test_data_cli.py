"""`suite data synth` from the command line: output, help, and the error cases (exit code 2, one
line on stderr, nothing written or overwritten)."""

import subprocess
import sys

from suite.cli import main

from data_helpers import read

SMALL_ARGS = ["--images", "30", "--val-images", "12", "--classes", "6", "--size", "48"]


def test_synth_writes_the_set_and_says_what(tmp_path, capsys):
    out = tmp_path / "set"
    assert main(["data", "synth", "--out", str(out), *SMALL_ARGS, "--seed", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert "30 + 12 images" in line and "6 classes (rare" in line
    train = read(out / "annotations" / "lvis_v1_train.json")
    assert len(train["images"]) == 30 and len(train["categories"]) == 6
    assert train["info"]["spec"]["seed"] == 2
    assert len(list((out / "images" / "val").glob("*.png"))) == 12
    assert [path.name for path in tmp_path.iterdir()] == ["set"]  # no staging folder left


def test_existing_set_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "set"
    assert main(["data", "synth", "--out", str(out), *SMALL_ARGS]) == 0
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    capsys.readouterr()
    assert main(["data", "synth", "--out", str(out), *SMALL_ARGS, "--seed", "9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err and "not empty" in err
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["set"]


def test_bad_argument_is_one_line_and_writes_nothing(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path / "set"), "--classes", "100"]) == 2
    err = capsys.readouterr().err
    assert err == "suite data: error: num_classes must be in [3, 64], got 100\n"
    assert list(tmp_path.iterdir()) == []


def test_empty_existing_folder_is_used(tmp_path):
    out = tmp_path / "set"
    out.mkdir()
    assert main(["data", "synth", "--out", str(out), *SMALL_ARGS]) == 0
    assert (out / "annotations" / "lvis_v1_val.json").is_file()


def test_python_m_suite_without_traceback(tmp_path):
    out = tmp_path / "file"
    out.write_text("not a folder")
    done = subprocess.run([sys.executable, "-m", "suite", "data", "synth", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr and str(out) in done.stderr
    assert out.read_text() == "not a folder"
    help_text = subprocess.run([sys.executable, "-m", "suite", "data", "synth", "--help"],
                               capture_output=True, text=True, timeout=120).stdout
    assert "lvis_v1_train.json" in help_text and "--classes K" in help_text


def test_data_and_report_commands_leave_torch_unloaded(tmp_path):
    """`suite data` and `suite report` import only their own command module (suite.cli.COMMANDS):
    loading torch and Detectron2 would be most of a short command's time."""
    code = ("import sys; from suite.cli import main; "
            f"codes = [main(['data', 'synth', '--out', {str(tmp_path / 'file')!r}, '--images', '1']), "
            f"main(['report', '--results', {str(tmp_path / 'none')!r}, '--out', {str(tmp_path / 'out')!r}])]; "
            "print(codes, sorted(name for name in ('torch', 'detectron2') if name in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[2, 2] []", done.stdout + done.stderr


def test_unwritable_place_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["data", "synth", "--out", str(blocker / "set"), *SMALL_ARGS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{blocker / 'set'}: cannot create the folder" in err
    assert blocker.read_text() == "x"
