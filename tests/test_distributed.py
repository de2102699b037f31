"""State under real torch.distributed (gloo, two processes).

- The losses: Seesaw's counts and EQLv2's gradient sums are the global ones on every rank after
  each step; the federated loss draws per rank.
- Detectron2: each rank builds the Mask R-CNN with Seesaw, wraps it in DistributedDataParallel,
  trains one step on its own shard of the train loader, and afterwards holds the counts of both
  ranks' sampled RoIs; the gradient balance recorded for the run is the sum of both ranks'.
- The fixed protocol's pass (`suite.evaluation.class_topk`): each rank keeps the k best of each
  category of its shard, rank 0's merge is the k best of the model's every detection on the set.

The two ranks are spawned once for the module: each runs every scenario in one process group, and
each test checks its scenario's results (a rank's start-up, importing torch and Detectron2 and
building the fused CPU kernels, costs more than all the scenarios together)."""

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from d2_helpers import PREFIX, TINY, collect_k_best, every_detection, k_best_per_category, tiny_cfg, train_batches
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from torch.nn.parallel import DistributedDataParallel

from suite.data.register import RegisteredDataset, register_synthetic_lvis
from suite.data.synth import generate
from suite.losses import build_loss

WORLD_SIZE = 2
NUM_CLASSES = 4
RANK_LABELS = {0: [0, 0, 1, 4, 4], 1: [1, 2, 2, 2, 4]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seesaw_counts(rank: int):
    loss = build_loss("seesaw", NUM_CLASSES).train()
    labels = torch.tensor(RANK_LABELS[rank])
    logits = torch.randn(len(labels), loss.num_logits, requires_grad=True)
    sum(loss(logits, labels).values()).backward()
    return loss.cum_samples.tolist()


def test_counts_are_summed_over_ranks(rank_results):
    results = rank_results["seesaw"]
    expected = torch.bincount(torch.tensor(RANK_LABELS[0] + RANK_LABELS[1]), minlength=NUM_CLASSES + 1).tolist()
    assert results[0] == expected == results[1]


def eqlv2_batch(rank: int, step: int):
    generator = torch.Generator().manual_seed(100 * step + rank)
    logits = torch.randn(len(RANK_LABELS[rank]), NUM_CLASSES + 1, generator=generator, dtype=torch.float64) * 3
    return logits.requires_grad_(), torch.tensor(RANK_LABELS[rank])


def eqlv2_state(rank: int):
    loss = build_loss("eqlv2", NUM_CLASSES).double().train()
    for step in range(3):
        logits, labels = eqlv2_batch(rank, step)
        sum(loss(logits, labels).values()).backward()
    return {key: value.tolist() for key, value in loss.state_dict().items()}


def test_eqlv2_gradient_sums_are_summed_over_ranks(rank_results):
    """Each step's sums are sums over RoIs, so two ranks must hold what one process holds after
    the two ranks' batches concatenated."""
    results = rank_results["eqlv2"]
    single = build_loss("eqlv2", NUM_CLASSES).double().train()
    for step in range(3):
        batches = [eqlv2_batch(rank, step) for rank in (0, 1)]
        single(torch.cat([logits for logits, _ in batches]), torch.cat([labels for _, labels in batches]))
    assert results[0] == results[1]
    for key, value in single.state_dict().items():
        torch.testing.assert_close(torch.tensor(results[0][key], dtype=torch.float64), value, rtol=1e-12, atol=0)


def fed_sampled_classes(rank: int):
    loss = build_loss("fed", 200, class_freq=[0.01] * 200, num_sampled_classes=10).train()
    labels = torch.tensor([200, 200])  # the same labels on both ranks
    return loss.sample_classes(labels, loss.step_generator(torch.device("cpu"))).nonzero().tolist()


def test_fed_ranks_draw_their_own_classes(rank_results):
    """Seeded with the rank as Detectron2 seeds each rank's generator differently: two ranks with
    the same labels sample different classes."""
    results = rank_results["fed"]
    assert len(results[0]) == len(results[1]) == 9 and results[0] != results[1]


def detectron2_step(rank: int, dataset: RegisteredDataset):
    """One DistributedDataParallel training step of the tiny Mask R-CNN with Seesaw on `dataset`."""
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
    return {"image_ids": [item["image_id"] for item in batch],
            "local": torch.bincount(seen[0], minlength=dataset.num_classes + 1).tolist(),
            "counts": loss.cum_samples.tolist(),
            "local_neg_grad": balance.neg_grad.tolist(),
            "balance": balance.as_record(all_ranks=True)}


def test_every_detectron2_rank_holds_the_global_counts(rank_results):
    first, second = rank_results["detectron2"][0], rank_results["detectron2"][1]
    assert len(first["image_ids"]) == len(second["image_ids"]) == 1
    assert first["image_ids"] != second["image_ids"]
    assert first["local"] != second["local"]
    total = [a + b for a, b in zip(first["local"], second["local"])]
    assert first["counts"] == total == second["counts"]
    assert first["local_neg_grad"] != second["local_neg_grad"]
    assert first["balance"] == second["balance"]
    expected = [a + b for a, b in zip(first["local_neg_grad"], second["local_neg_grad"])]
    assert first["balance"]["neg_grad"] == expected


def class_topk_pass(rank: int, dataset: RegisteredDataset):
    """The fixed protocol's pass with k = 2 over the validation set, sharded by Detectron2's test
    loader; rank 0 also runs the model over the whole set, no limit per image and no floor."""
    cfg = tiny_cfg(dataset, "ce")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    collected = collect_k_best(cfg, model, dataset.val, k=2)
    if rank != 0:
        return {"evaluation": collected["evaluation"]}
    expected = [dict(result, category_id=result["category_id"] + 1)  # the evaluator writes category ids
                for result in k_best_per_category(every_detection(cfg, model, dataset.val), 2)]
    return {"evaluation": collected["evaluation"], "kept": len(collected["kept"]),
            "kept_is_the_k_best": collected["kept"] == expected}


def test_the_ranks_keep_the_k_best_of_the_whole_set(rank_results):
    first, second = rank_results["class_topk"][0], rank_results["class_topk"][1]
    assert first["kept_is_the_k_best"] and first["kept"] > 0
    assert set(first["evaluation"]) == {"bbox-fixed", "segm-fixed"} and second["evaluation"] == {}


LOSS_SCENARIOS = {"seesaw": seesaw_counts, "eqlv2": eqlv2_state, "fed": fed_sampled_classes}


def worker(rank: int, port: int, root: str, results) -> None:
    """One rank: every scenario in turn, in one gloo process group; results[(name, rank)]."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    try:
        for name, scenario in LOSS_SCENARIOS.items():
            results[(name, rank)] = scenario(rank)
        dataset = register_synthetic_lvis(Path(root), prefix=PREFIX)  # each process has its own catalog
        results[("detectron2", rank)] = detectron2_step(rank, dataset)
        results[("class_topk", rank)] = class_topk_pass(rank, dataset)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    """{scenario: {rank: its result}} from one spawn of two ranks."""
    root = tmp_path_factory.mktemp("synth")
    generate(TINY, root)
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(worker, args=(free_port(), str(root), results), nprocs=WORLD_SIZE, join=True)
        return {name: {rank: results[(name, rank)] for rank in range(WORLD_SIZE)}
                for name in (*LOSS_SCENARIOS, "detectron2", "class_topk")}
