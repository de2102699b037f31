"""A fresh clone of this checkout, for the tests of what a user's clone does (tox, `pip install .`)."""

import shutil
import subprocess
from pathlib import Path

from suite.environment import REPO_ROOT


def fresh_clone(folder: Path) -> Path:
    """A clone of this checkout with its uncommitted changes and new files, and nothing it built
    or installed (no .venv, no .tox, no stamp)."""
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(folder)], check=True)
    changes = subprocess.run(["git", "-C", str(REPO_ROOT), "diff", "HEAD", "--binary"], capture_output=True,
                             check=True).stdout
    if changes:
        subprocess.run(["git", "-C", str(folder), "apply", "--binary", "-"], input=changes, check=True)
    new_files = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "--others", "--exclude-standard", "-z"],
                               capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, new_files):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, folder / name, follow_symlinks=False)  # a link stays a link
    return folder
