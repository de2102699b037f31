"""Seesaw's counts in a real two-process Detectron2 training step on gloo: each rank builds the
Mask R-CNN, wraps it in DistributedDataParallel, trains one step on its own shard of the train
loader, and afterwards holds the counts of both ranks' sampled RoIs; the gradient balance
recorded for the run is the sum of both ranks'."""

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from d2_helpers import PREFIX, TINY, tiny_cfg, train_batches
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from torch.nn.parallel import DistributedDataParallel

from suite.data.register import register_synthetic_lvis
from suite.data.synth import generate

WORLD_SIZE = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker(rank: int, port: int, root: str, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    try:
        dataset = register_synthetic_lvis(Path(root), prefix=PREFIX)  # each process has its own catalog
        cfg = tiny_cfg(dataset, "seesaw", RECORD_GRAD_BALANCE=True)
        torch.manual_seed(0)
        model = build_model(cfg)
        loss = model.roi_heads.box_predictor.cls_loss
        seen = []
        loss.register_forward_pre_hook(lambda module, args: seen.append(args[1].clone()))
        # Detectron2's loader shards the sampler by rank: IMS_PER_BATCH / WORLD_SIZE images each.
        batch = train_batches(cfg, 1)[0]
        ddp = DistributedDataParallel(model, find_unused_parameters=True)
        with EventStorage():
            sum(ddp(batch).values()).backward()
        balance = model.roi_heads.box_predictor.grad_balance
        results[rank] = {"image_ids": [item["image_id"] for item in batch],
                         "local": torch.bincount(seen[0], minlength=dataset.num_classes + 1).tolist(),
                         "counts": loss.cum_samples.tolist(),
                         "local_neg_grad": balance.neg_grad.tolist(),
                         "balance": balance.as_record(all_ranks=True)}
    finally:
        dist.destroy_process_group()


def test_every_rank_holds_the_global_counts(tmp_path):
    generate(TINY, tmp_path)
    results = mp.Manager().dict()
    mp.spawn(worker, args=(free_port(), str(tmp_path), results), nprocs=WORLD_SIZE, join=True)
    first, second = results[0], results[1]
    assert len(first["image_ids"]) == len(second["image_ids"]) == 1
    assert first["image_ids"] != second["image_ids"]
    assert first["local"] != second["local"]
    total = [a + b for a, b in zip(first["local"], second["local"])]
    assert first["counts"] == total == second["counts"]
    assert first["local_neg_grad"] != second["local_neg_grad"]
    assert first["balance"] == second["balance"]
    expected = [a + b for a, b in zip(first["local_neg_grad"], second["local_neg_grad"])]
    assert first["balance"]["neg_grad"] == expected
