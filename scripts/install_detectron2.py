"""Make Detectron2 importable in the current Python environment.

Route 1 (kept as is): a Detectron2 that already imports, e.g. a user's own source build with its
compiled ops (`detectron2._C`) on a GPU machine. Nothing is replaced.

Route 2 (installed here): PyPI has no Detectron2 wheel, but `pb1-detectron2==0.6` is an sdist of the
v0.6 release without its C++/CUDA sources. This script downloads it, installs its Python package
without the extension, and gives it a `detectron2._C` placeholder whose every attribute raises
an error naming what is missing. Mask R-CNN training, inference and the LVIS evaluator work on
this route (they use torchvision's ROIAlign and NMS); deformable convolution, rotated boxes and the
fast COCO evaluator need route 1.

Route 3 (checked here, installs nothing): a Detectron2 source tree put on PYTHONPATH, e.g. today's
main branch for the tox environment `d2-current`. It is used as pure Python, without building its
compiled ops: current Detectron2 imports `detectron2._C` only where an op needs it (deformable
convolution, rotated boxes, the fast COCO evaluator), none of which the suite uses, so no
placeholder is needed (a read-only source tree could not take one anyway).
`--check-source PATH` verifies that `import detectron2` resolves to PATH, that the modules the
suite imports load and that the model zoo's configs are linked as an install links them; a
missing `_C` is reported, not an error.

Usage: python scripts/install_detectron2.py                      (run with the environment's own interpreter)
       PYTHONPATH=PATH python scripts/install_detectron2.py --check-source PATH
"""

import importlib.util
import os
import pathlib
import subprocess
import sys
import tarfile
import tempfile

SDIST = "pb1-detectron2==0.6"
# pip 25 and newer refuse to download that sdist (its metadata declares a direct-URL extra,
# panopticapi @ https://...); an older pip, installed into a temporary folder, fetches it.
DOWNLOAD_PIP = "pip>=23,<25"
# Runtime needs of Detectron2 v0.6 on current Python packages (see shared ENVIRONMENT notes):
# Pillow<10 because v0.6 evaluates Image.LINEAR at import; setuptools<81 because model_zoo
# imports pkg_resources. Its own pin on black==21.4b2 (LazyConfig pretty-printing only) is dropped.
RUNTIME_REQUIREMENTS = [
    "Pillow>=7.1,<10",
    "setuptools<81",
    "matplotlib",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "tensorboard",
    "fvcore>=0.1.5,<0.1.6",
    "iopath>=0.1.7,<0.1.10",
    "omegaconf>=2.1,<2.4",
    "hydra-core>=1.1",
]

PLACEHOLDER_C = '''"""Placeholder for Detectron2's compiled ops, written by seesaw-suite's installer.

This Detectron2 was installed from the pb1-detectron2 sdist, which lacks the C++/CUDA sources.
"""

MISSING = (
    "detectron2._C (compiled ops) is not available in this install: deformable convolution, "
    "rotated boxes and the fast COCO evaluator need Detectron2 built from source."
)


def get_compiler_version():
    return "not built (pure-Python Detectron2 install)"


def get_cuda_version():
    return "not built (pure-Python Detectron2 install)"


def has_cuda():
    return False


def __getattr__(name):
    raise AttributeError(f"{name}: {MISSING}")
'''


def pip(*args: str, env=None) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, env=env)


def download_sdist(folder: pathlib.Path) -> pathlib.Path:
    """Download SDIST into folder with DOWNLOAD_PIP; returns the archive."""
    with tempfile.TemporaryDirectory() as old_pip:
        pip("install", "--quiet", "--target", old_pip, DOWNLOAD_PIP)
        path = os.pathsep.join(filter(None, [old_pip, os.environ.get("PYTHONPATH")]))
        # Its setup.py imports torch even to report metadata: no build isolation.
        pip("download", "--quiet", "--no-deps", "--no-build-isolation", "-d", str(folder), SDIST,
            env={**os.environ, "PYTHONPATH": path})
    (archive,) = folder.glob("*.tar.gz")
    return archive


def install_from_sdist() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = pathlib.Path(tmp)
        archive = download_sdist(tmp_path)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp_path, filter="data")
        (src,) = [p for p in tmp_path.iterdir() if p.is_dir()]

        setup_py = src / "setup.py"
        text = setup_py.read_text()
        for old, new in [
            ("ext_modules=get_extensions(),", "ext_modules=[],"),
            ('"black==21.4b2",', ""),
        ]:
            if old not in text:
                sys.exit(f"install_detectron2: unexpected setup.py in {SDIST} (no {old!r})")
            text = text.replace(old, new)
        setup_py.write_text(text)
        # setup.py links top-level configs/ into model_zoo/ and installs them as package data;
        # the sdist ships them inside model_zoo/ only.
        (src / "detectron2" / "model_zoo" / "configs").rename(src / "configs")
        (src / "detectron2" / "_C.py").write_text(PLACEHOLDER_C)

        pip("install", "--quiet", *RUNTIME_REQUIREMENTS)
        pip("install", "--quiet", "--no-deps", "--no-build-isolation", str(src))


def check_source(source: str) -> None:
    """Route 3: exit with a message unless `import detectron2` gives the source tree at `source`
    and the modules the suite uses import from it."""
    if not source:
        sys.exit("install_detectron2: --check-source needs a Detectron2 source tree (set SUITE_D2_SOURCE)")
    tree = pathlib.Path(source).expanduser().resolve()
    if not (tree / "detectron2" / "__init__.py").is_file():
        sys.exit(f"install_detectron2: {tree} is not a Detectron2 source tree (no detectron2/__init__.py)")
    import detectron2

    imported = pathlib.Path(detectron2.__file__).resolve().parent.parent
    if imported != tree:
        sys.exit(f"install_detectron2: import detectron2 gives {imported}, not {tree}: put {tree} first on PYTHONPATH")
    for module in ("detectron2.layers", "detectron2.modeling", "detectron2.engine", "detectron2.evaluation",
                   "detectron2.data.datasets.lvis"):
        importlib.import_module(module)
    # model_zoo.get_config (the LazyConfig files' base) reads detectron2/model_zoo/configs, a link to
    # configs/ that Detectron2's setup.py makes when it installs; a bare source tree lacks it.
    if not (tree / "detectron2" / "model_zoo" / "configs").is_dir():
        sys.exit(f"install_detectron2: {tree} has no detectron2/model_zoo/configs (Detectron2's setup.py links it "
                 f"to configs/ on install): ln -s ../../configs {tree}/detectron2/model_zoo/configs")
    compiled = importlib.util.find_spec("detectron2._C") is not None
    print(f"install_detectron2: using the Detectron2 {detectron2.__version__} source tree at {tree} "
          f"({'with' if compiled else 'without'} compiled ops)")


def main() -> None:
    if sys.argv[1:2] == ["--check-source"]:
        check_source(sys.argv[2] if len(sys.argv) > 2 else "")
        return
    if importlib.util.find_spec("detectron2") is not None:
        import detectron2

        print(f"install_detectron2: using the installed Detectron2 {detectron2.__version__} "
              f"at {pathlib.Path(detectron2.__file__).parent}")
        return
    install_from_sdist()
    import detectron2.layers  # noqa: F401  (fails here, not in a test, if the route broke)

    print(f"install_detectron2: installed Detectron2 from {SDIST} (Python package, no compiled ops)")


if __name__ == "__main__":
    main()
