"""Seesaw's counts under real torch.distributed (gloo, two processes): every rank holds the
global counts after a step, and the losses computed on each rank use them."""

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
