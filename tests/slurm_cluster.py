"""A single-node Slurm on this machine, for the tests marked `slurm` (tests/conftest.py).

`single_node_slurm(folder)` starts, as root and from `folder`, munged (a key and a socket of its
own), slurmctld and slurmd on 127.0.0.1 with a slurm.conf of their own (ports that were free at
the start; no accounting database; proctrack/linuxproc and task/none, so no cgroups; this
machine's CPUs as one node, jobs sharing it by CPU; a requeued job waits CRED_EXPIRE_S, not
Slurm's 120 s, before it starts again). Inside the `with`, SLURM_CONF names that
slurm.conf in this process's environment, and so in every process it starts: sbatch and squeue,
and through sbatch the jobs. On leaving it, passed or failed, it cancels every job, stops the
daemons, then kills by id every process left whose environment names this slurm.conf (a job's
steps, slurmstepd), and fails if one survives: nothing of the cluster keeps running. The
daemons' logs stay in `folder`.

It needs Slurm's and munge's programs (Debian's slurm-wlm and munge, which
scripts/install_slurm.sh installs) and root: the daemons run as root, the jobs as this user.
"""

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator, List

PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scancel", "sinfo")
NODE = "suitenode"
START_S = 60  # until the node is idle
STOP_S = 15  # per step of the stop: the jobs' end, each daemon's exit, the last processes' exit
SOCKET_PATH_MAX = 107  # a unix socket's path (sun_path, less its final NUL)
# A job step's credential lifetime, which is also how long a requeued job waits before it starts
# again (Slurm's default: 120 s).
CRED_EXPIRE_S = 15


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _slurm_conf(folder: Path, munge_socket: Path) -> str:
    host = socket.gethostname().split(".")[0]  # slurmctld runs where SlurmctldHost names this host
    return f"""\
ClusterName=suite
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket},cred_expire={CRED_EXPIRE_S}
StateSaveLocation={folder / 'state'}
SlurmdSpoolDir={folder / 'spool'}
SlurmctldPidFile={folder / 'slurmctld.pid'}
SlurmdPidFile={folder / 'slurmd.pid'}
SlurmctldLogFile={folder / 'slurmctld.log'}
SlurmdLogFile={folder / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MailProg=/bin/true
KillWait=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={host} CPUs={os.cpu_count()}
PartitionName=suite Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""


def _processes_of(conf: Path) -> List[int]:
    """The processes, but this one, whose environment names `conf` as SLURM_CONF."""
    marker = f"SLURM_CONF={conf}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return pids


def _wait(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _log_tail(folder: Path) -> str:
    return "\n".join(f"--- {path.name}:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:])
                     for path in sorted(folder.glob("*.log")) + sorted(folder.glob("*.out")))


@contextlib.contextmanager
def single_node_slurm(folder: Path) -> Iterator[Path]:
    """A single-node Slurm started from `folder` (created), its slurm.conf's path while in the
    `with` (module docstring). RuntimeError, with the daemons' logs, if it does not start."""
    missing = [program for program in PROGRAMS if shutil.which(program) is None]
    if missing:
        raise RuntimeError(f"a single-node Slurm needs {', '.join(missing)} on PATH: scripts/install_slurm.sh "
                           "installs Debian's slurm-wlm and munge (as root)")
    if os.geteuid() != 0:
        raise RuntimeError("a single-node Slurm runs its daemons as root: run the tests marked slurm as root")
    folder = Path(folder).absolute()
    for name in ("state", "spool"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    munge_socket = folder / "munge.socket"
    if len(str(munge_socket)) > SOCKET_PATH_MAX:
        raise RuntimeError(f"{munge_socket}: too long a path for a unix socket; use a shorter --basetemp")
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    conf = folder / "slurm.conf"
    conf.write_text(_slurm_conf(folder, munge_socket))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    commands = [
        # --force: munged refuses a socket under a folder that not everyone may enter, as pytest's are.
        ["munged", "--foreground", "--force", f"--socket={munge_socket}", f"--key-file={key}",
         f"--pid-file={folder / 'munged.pid'}", f"--log-file={folder / 'munged.log'}",
         f"--seed-file={folder / 'munged.seed'}"],
        ["slurmctld", "-D", "-i"],
        ["slurmd", "-D", "-N", NODE],
    ]
    daemons: List[subprocess.Popen] = []
    previous = os.environ.get("SLURM_CONF")
    try:
        for command in commands:
            with open(folder / f"{command[0]}.out", "wb") as output:
                # A session of its own: a Ctrl-C to the tests reaches the daemons through the stop below only.
                daemons.append(subprocess.Popen(command, env=env, cwd=folder, stdout=output, stderr=subprocess.STDOUT,
                                                start_new_session=True))
            if command[0] == "munged":
                _wait(lambda: munge_socket.exists() or daemons[0].poll() is not None, START_S)

        def idle() -> bool:
            if any(daemon.poll() is not None for daemon in daemons):
                raise RuntimeError(f"a Slurm daemon exited at its start:\n{_log_tail(folder)}")
            listing = subprocess.run(["sinfo", "--noheader", "--format=%T"], env=env, capture_output=True, text=True)
            return listing.returncode == 0 and listing.stdout.strip() == "idle"

        if not _wait(idle, START_S):
            raise RuntimeError(f"the single-node Slurm was not idle within {START_S} s:\n{_log_tail(folder)}")
        os.environ["SLURM_CONF"] = str(conf)
        yield conf
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        _stop(daemons, conf, env)


def _stop(daemons: List[subprocess.Popen], conf: Path, env: dict) -> None:
    """Cancel every job (the cluster holds only ours), stop the daemons (slurmd, slurmctld,
    munged), then kill what is left of the cluster's processes; RuntimeError if one survives."""
    if len(daemons) == 3 and all(daemon.poll() is None for daemon in daemons):
        subprocess.run(["scancel", f"--user={getpass.getuser()}"], env=env, capture_output=True, timeout=STOP_S)

        def no_jobs() -> bool:
            listing = subprocess.run(["squeue", "--noheader", "--format=%i"], env=env, capture_output=True, text=True)
            return listing.returncode != 0 or not listing.stdout.strip()

        _wait(no_jobs, STOP_S)
    for daemon in reversed(daemons):
        if daemon.poll() is None:
            daemon.terminate()
            try:
                daemon.wait(STOP_S)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
    for pid in _processes_of(conf):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if not _wait(lambda: not _processes_of(conf), STOP_S):
        raise RuntimeError(f"processes of the single-node Slurm outlived its stop: {_processes_of(conf)}")
