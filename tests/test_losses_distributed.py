"""State under real torch.distributed (gloo, two processes): Seesaw's counts and EQLv2's gradient
sums are the global ones on every rank after each step; the federated loss draws per rank."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from suite.losses import build_loss

NUM_CLASSES = 4
RANK_LABELS = {0: [0, 0, 1, 4, 4], 1: [1, 2, 2, 2, 4]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker(rank: int, world_size: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        loss = build_loss("seesaw", NUM_CLASSES).train()
        labels = torch.tensor(RANK_LABELS[rank])
        logits = torch.randn(len(labels), loss.num_logits, requires_grad=True)
        sum(loss(logits, labels).values()).backward()
        results[rank] = loss.cum_samples.tolist()
    finally:
        dist.destroy_process_group()


def test_counts_are_summed_over_ranks():
    results = mp.Manager().dict()
    mp.spawn(worker, args=(2, free_port(), results), nprocs=2, join=True)
    expected = torch.bincount(torch.tensor(RANK_LABELS[0] + RANK_LABELS[1]), minlength=NUM_CLASSES + 1).tolist()
    assert results[0] == expected == results[1]


def eqlv2_batch(rank: int, step: int):
    generator = torch.Generator().manual_seed(100 * step + rank)
    logits = torch.randn(len(RANK_LABELS[rank]), NUM_CLASSES + 1, generator=generator, dtype=torch.float64) * 3
    return logits.requires_grad_(), torch.tensor(RANK_LABELS[rank])


def eqlv2_worker(rank: int, world_size: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        loss = build_loss("eqlv2", NUM_CLASSES).double().train()
        for step in range(3):
            logits, labels = eqlv2_batch(rank, step)
            sum(loss(logits, labels).values()).backward()
        results[rank] = {key: value.tolist() for key, value in loss.state_dict().items()}
    finally:
        dist.destroy_process_group()


def test_eqlv2_gradient_sums_are_summed_over_ranks():
    """Each step's sums are sums over RoIs, so two ranks must hold what one process holds after
    the two ranks' batches concatenated."""
    results = mp.Manager().dict()
    mp.spawn(eqlv2_worker, args=(2, free_port(), results), nprocs=2, join=True)
    single = build_loss("eqlv2", NUM_CLASSES).double().train()
    for step in range(3):
        batches = [eqlv2_batch(rank, step) for rank in (0, 1)]
        single(torch.cat([logits for logits, _ in batches]), torch.cat([labels for _, labels in batches]))
    assert results[0] == results[1]
    for key, value in single.state_dict().items():
        torch.testing.assert_close(torch.tensor(results[0][key], dtype=torch.float64), value, rtol=1e-12, atol=0)


def fed_worker(rank: int, world_size: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        loss = build_loss("fed", 200, class_freq=[0.01] * 200, num_sampled_classes=10).train()
        labels = torch.tensor([200, 200])  # the same labels on both ranks
        results[rank] = loss.sample_classes(labels, loss.step_generator(torch.device("cpu"))).nonzero().tolist()
    finally:
        dist.destroy_process_group()


def test_fed_ranks_draw_their_own_classes():
    """Seeded with the rank as Detectron2 seeds each rank's generator differently: two ranks with
    the same labels sample different classes."""
    results = mp.Manager().dict()
    mp.spawn(fed_worker, args=(2, free_port(), results), nprocs=2, join=True)
    assert len(results[0]) == len(results[1]) == 9 and results[0] != results[1]
