"""The processes of one run across machines, as Detectron2's `launch` spells them: processes
per machine (`--num-gpus`), `--num-machines`, `--machine-rank`, `--dist-url`.

On GPUs this is Detectron2's own `launch` (NCCL). On the CPU, Detectron2 v0.6's `launch`
refuses (its workers assert CUDA and use NCCL) and later versions pick gloo, but on either
version `DefaultTrainer` then wraps the CPU model in DistributedDataParallel with
`device_ids=[local rank]`, which DDP refuses for a CPU module (detectron2 issue 5146). So on the
CPU the ranks are started here with gloo, as Detectron2's current `launch` starts them (one
process per rank, its machine's local process group, a barrier), and `create_ddp_model`
(within `cpu_ddp()`, DefaultTrainer's) wraps a CPU model: the same route on every Detectron2
version.
"""

import contextlib
import hashlib
import socket
from datetime import timedelta
from typing import Callable, List, Mapping, Sequence

import torch
import torch.distributed as dist
from detectron2.engine import defaults
from detectron2.engine.defaults import create_ddp_model as detectron2_create_ddp_model
from detectron2.utils import comm

DEFAULT_TIMEOUT = timedelta(minutes=30)  # Detectron2's


def free_port() -> int:
    """A TCP port free on this machine now (for dist_url "auto")."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_dist_url(num_machines: int, dist_url: str) -> None:
    """ValueError for a rendezvous that several machines cannot share."""
    if num_machines > 1 and dist_url == "auto":
        raise ValueError(f"--num-machines {num_machines} needs --dist-url tcp://HOST:PORT of machine 0 "
                         "(auto picks a port on this machine only)")


def launch(main_func: Callable, num_processes_per_machine: int, num_machines: int = 1, machine_rank: int = 0,
           dist_url: str = "auto", args: Sequence = (), use_gpu: bool = True) -> None:
    """Call `main_func(*args)` in every process of this machine: in this process when the world
    has one process, else one spawned process per rank of this machine, each in the process
    group (NCCL through Detectron2's `launch` with `use_gpu`, gloo otherwise)."""
    check_dist_url(num_machines, dist_url)
    world_size = num_machines * num_processes_per_machine
    if world_size == 1:
        main_func(*args)
        return
    if use_gpu:
        from detectron2.engine import launch as detectron2_launch

        detectron2_launch(main_func, num_processes_per_machine, num_machines=num_machines,
                          machine_rank=machine_rank, dist_url=dist_url, args=tuple(args))
        return
    if dist_url == "auto":
        dist_url = f"tcp://127.0.0.1:{free_port()}"
    torch.multiprocessing.start_processes(
        _gloo_worker, nprocs=num_processes_per_machine, start_method="spawn", daemon=False,
        args=(main_func, world_size, num_processes_per_machine, machine_rank, dist_url, tuple(args)))


def _gloo_worker(local_rank: int, main_func: Callable, world_size: int, num_processes_per_machine: int,
                 machine_rank: int, dist_url: str, args: tuple) -> None:
    dist.init_process_group("gloo", init_method=dist_url, world_size=world_size,
                            rank=machine_rank * num_processes_per_machine + local_rank, timeout=DEFAULT_TIMEOUT)
    if hasattr(comm, "create_local_process_group"):  # Detectron2 after v0.6
        comm.create_local_process_group(num_processes_per_machine)
    else:  # v0.6: as its launch does
        for machine in range(world_size // num_processes_per_machine):
            group = dist.new_group(list(range(machine * num_processes_per_machine,
                                              (machine + 1) * num_processes_per_machine)))
            if machine == machine_rank:
                comm._LOCAL_PROCESS_GROUP = group
    comm.synchronize()
    try:
        main_func(*args)
    finally:
        dist.destroy_process_group()


def create_ddp_model(model: torch.nn.Module, **kwargs) -> torch.nn.Module:
    """Detectron2's `create_ddp_model` (the model itself in a world of one process), giving
    DistributedDataParallel no `device_ids` for a CPU model, as DDP requires."""
    if next(model.parameters()).device.type == "cpu":
        kwargs.setdefault("device_ids", None)
    return detectron2_create_ddp_model(model, **kwargs)


@contextlib.contextmanager
def cpu_ddp():
    """Within: Detectron2's DefaultTrainer wraps its model with `create_ddp_model` above."""
    original = defaults.create_ddp_model
    defaults.create_ddp_model = create_ddp_model
    try:
        yield
    finally:
        defaults.create_ddp_model = original


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of named tensors (each with its name, dtype and shape, in the mapping's order): two
    mappings have the same digest exactly when they are bit-identical."""
    digest = hashlib.sha256()
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def rank_weights_sha256(model: torch.nn.Module) -> List[str]:
    """`tensors_sha256` of every rank's parameters (the weights DistributedDataParallel keeps
    equal; buffers such as BatchNorm's running statistics are each rank's own, as Detectron2's
    DDP does not broadcast them), in rank order. A collective: every rank calls it."""
    return comm.all_gather(tensors_sha256(dict(getattr(model, "module", model).named_parameters())))
