"""`seesaw_official` (mmdet 3.3.0's code behind the suite's interface) against our `seesaw` in real
Detectron2 training, with the cosine classifier of the official configs.

Detectron2 trains with `seesaw_official` for 20 iterations; at every iteration our `seesaw`
(its own counts, updated from the same labels) computes its terms and gradient on the very
logits and labels the official loss got. They agree within 1e-4 relative at every iteration.

Why not two separate trainings compared term by term: in float32 the two codes round
differently (about 1e-7), training amplifies that (measured: 1e-5 relative at iteration 6, 3e-2
at iteration 12, once a proposal flips), and Detectron2's RPN cannot run in float64 (its NMS
casts scores to float32). Comparing on the same inputs at every step of a real run checks the
same thing without that noise.
"""

import pytest
import torch
from d2_helpers import tiny_cfg, tiny_dataset
from detectron2.utils.env import seed_all_rng

from suite.harness.trainer import LongTailTrainer
from suite.losses import build_loss

ITERATIONS = 20
CLS_TERMS = ("loss_cls_classes", "loss_cls_objectness")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("official") / "set", prefix="official")


def test_first_20_iterations_agree_with_the_official_code(dataset, tmp_path):
    cfg = tiny_cfg(dataset, "seesaw_official", output=tmp_path, COSINE_CLASSIFIER=True)
    cfg.SOLVER.MAX_ITER = ITERATIONS
    cfg.SOLVER.BASE_LR = 0.01
    cfg.SOLVER.CHECKPOINT_PERIOD = 1000
    seed_all_rng(cfg.SEED)
    trainer = LongTailTrainer(cfg)
    trainer.resume_or_load(resume=False)
    official = trainer.model.roi_heads.box_predictor.cls_loss
    ours = build_loss("seesaw", dataset.num_classes).train()
    compared = []

    def shadow(module, inputs, official_terms):
        logits, labels = inputs
        logits = logits.detach().clone().requires_grad_()
        our_terms = ours(logits, labels)
        (our_grad,) = torch.autograd.grad(sum(our_terms.values()), logits)
        compared.append(({name: official_terms[name].detach() for name in CLS_TERMS},
                         {name: our_terms[name].detach() for name in CLS_TERMS}, our_grad, logits, labels))

    official.register_forward_hook(shadow)
    trainer.train()

    assert len(compared) == ITERATIONS
    reference = build_loss("seesaw_official", dataset.num_classes).train()
    for iteration, (theirs, mine, our_grad, logits, labels) in enumerate(compared):
        for name in CLS_TERMS:
            torch.testing.assert_close(mine[name], theirs[name], rtol=1e-4, atol=0,
                                       msg=lambda text, name=name: f"iteration {iteration} {name}: {text}")
        # The official gradient on the same logits (a fresh official loss replaying the labels).
        (their_grad,) = torch.autograd.grad(sum(reference(logits, labels).values()), logits)
        torch.testing.assert_close(our_grad, their_grad, rtol=1e-4, atol=1e-7)
    # The same labels were counted: ours int64, the trained official one float32.
    assert torch.equal(ours.cum_samples, official.official.cum_samples.long())
    assert ours.cum_samples.sum() == ITERATIONS * cfg.SOLVER.IMS_PER_BATCH * cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE
    # Not a vacuous agreement: training moved the classification terms.
    first, last = compared[0][0]["loss_cls_classes"], compared[-1][0]["loss_cls_classes"]
    assert abs(float(last - first)) > 1e-2


def test_official_counts_freeze_in_eval_mode_and_scores_are_official():
    loss = build_loss("seesaw_official", 4)
    logits = torch.randn(6, loss.num_logits)
    labels = torch.tensor([0, 0, 2, 4, 4, 4])
    loss.train()(logits, labels)
    assert loss.official.cum_samples.tolist() == [2, 0, 1, 0, 3]
    loss.eval()(logits, labels)
    assert loss.official.cum_samples.tolist() == [2, 0, 1, 0, 3]
    ours = build_loss("seesaw", 4)
    torch.testing.assert_close(loss.scores(logits), ours.scores(logits))
    with pytest.raises(ValueError, match="p and q"):
        build_loss("seesaw_official", 4, p=-1)


def test_train_and_study_accept_it_by_name():
    from suite.workflows.study import ARMS
    from suite.harness.train import TrainOptions, _check_options
    from suite.errors import UserError

    _check_options(TrainOptions(loss="seesaw_official", dataset="unused", output="unused"))
    with pytest.raises(UserError, match="seesaw_official"):  # the list of known losses names it
        _check_options(TrainOptions(loss="nope", dataset="unused", output="unused"))
    assert ARMS["seesaw_official"].loss == "seesaw_official" and ARMS["seesaw_official"].cosine
