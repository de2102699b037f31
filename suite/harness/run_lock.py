"""One run per directory: `RunLock(run_dir)` holds `run_dir/.suite.lock` for as long as a
command works in it (`suite train`, `suite eval`, a `suite study` cell).

The lock is the kernel's (`fcntl.flock`, exclusive, non-blocking) on that file, not the file's
existence: a process that dies, even by SIGKILL, releases it, so the file a killed run leaves
behind is recognised as stale and simply taken over. The file holds the holder's pid, for the
refusal message. Works on local file systems and on NFS (Linux emulates flock with NFS locks).
"""

import errno
import fcntl
import os
from pathlib import Path
from typing import Optional

from suite.errors import UserError

LOCK_FILE = ".suite.lock"


class RunLock:
    """Context manager: exclusive use of `run_dir` (created if missing; a directory created here
    and left empty is removed again on release). UserError (one line naming the directory and
    the holder's pid) if another process holds it, or if `run_dir` is a file."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self._handle: Optional[int] = None
        self._created_dir = False

    @property
    def path(self) -> Path:
        return self.run_dir / LOCK_FILE

    def acquire(self) -> "RunLock":
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise UserError(f"{self.run_dir} is a file, not a run directory")
        self._created_dir = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            handle = self._lock_file()
            # A holder releasing the lock unlinks the file first: a lock taken on an unlinked
            # file is not the directory's lock, so look again.
            if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(handle).st_ino:
                break
            os.close(handle)
        os.ftruncate(handle, 0)
        os.write(handle, f"{os.getpid()}\n".encode())
        os.fsync(handle)
        self._handle = handle
        return self

    def _lock_file(self) -> int:
        handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(handle)
            if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            raise UserError(f"{self.run_dir} is in use by another suite process (pid {holder_pid(self.run_dir)}, "
                            f"lock {self.path}); wait for it to finish or use another directory") from None
        return handle

    def release(self) -> None:
        if self._handle is None:
            return
        self.path.unlink(missing_ok=True)  # while still locked, so no one locks a file being removed
        os.close(self._handle)
        self._handle = None
        if self._created_dir and not any(self.run_dir.iterdir()):
            self.run_dir.rmdir()

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder_pid(run_dir: Path) -> Optional[int]:
    """The pid written in `run_dir`'s lock file (None if absent or unreadable)."""
    try:
        return int((Path(run_dir) / LOCK_FILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
