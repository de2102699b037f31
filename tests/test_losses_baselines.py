"""EQL, EQLv2 and the federated loss held to their authors' code: EQL to the formula of
tztztztztz/eql.detectron2 (written here in plain autograd), EQLv2 to mmdet 3.3.0's EQLV2Loss over
a sequence of training steps, the federated loss to Detectron2's formula for a given sampled set
(and, when SUITE_D2_SOURCE names a Detectron2 source tree, to that tree's own functions)."""

import itertools
import json
import math
import os
import pathlib
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from suite.losses.official import load_official_eqlv2

from losses_helpers import assert_value_and_gradient_close, make_batch, make_loss, zipf_class_freq

REPO = pathlib.Path(__file__).resolve().parents[1]


# --- EQL -------------------------------------------------------------------------------------

def authors_eql(logits, labels, class_freq, lambda_):
    """The authors' eql_loss: C logits, a one-hot over C + 1 cut to C columns (background RoIs
    all zero), w = 1 - E(r) T(f) (1 - y), sum(BCE * w) / N."""
    num_rois, num_classes = logits.shape
    target = torch.zeros(num_rois, num_classes + 1, dtype=logits.dtype)
    target[torch.arange(num_rois), labels] = 1
    target = target[:, :num_classes]
    exclude = (labels != num_classes).to(logits.dtype)[:, None].expand(num_rois, num_classes)
    threshold = (class_freq < lambda_).to(logits.dtype)[None, :].expand(num_rois, num_classes)
    weight = 1 - exclude * threshold * (1 - target)
    return torch.sum(F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight) / num_rois


@pytest.mark.parametrize("num_classes, num_rois, lambda_", [(6, 50, 1.1e-3), (1203, 512, 1.1e-3), (40, 64, 0.0)])
def test_eql_is_the_authors_loss_in_value_and_gradient(num_classes, num_rois, lambda_):
    class_freq = zipf_class_freq(num_classes)
    loss = make_loss("eql", num_classes, class_freq=class_freq, lambda_=lambda_).double()
    assert loss.num_logits == num_classes
    logits, labels = make_batch(loss, num_rois, seed=num_classes, scale=4.0)
    value = loss(logits, labels)["loss_cls"]
    expected = authors_eql(logits, labels, class_freq, lambda_)
    assert_value_and_gradient_close(value, expected, logits, rtol=1e-13, grad_rtol=1e-11, grad_atol=1e-17)


def test_eql_scores_and_initial_bias_are_the_authors():
    loss = make_loss("eql", 5)
    logits, _ = make_batch(loss, 9)
    expected = torch.cat([torch.sigmoid(logits), torch.zeros(9, 1, dtype=logits.dtype)], dim=1)
    torch.testing.assert_close(loss.scores(logits), expected.detach(), rtol=0, atol=0)
    assert loss.initial_logit_bias == pytest.approx(-math.log((1 - 0.001) / 0.001), rel=1e-15)


# --- EQLv2 -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def official_eqlv2():
    return load_official_eqlv2()


def long_tail_batch(num_classes, num_rois, step):
    """Logits and Zipf-like labels (a quarter background) so that the classes' ratios drift apart."""
    generator = torch.Generator().manual_seed(1000 + step)
    logits = torch.randn(num_rois, num_classes + 1, generator=generator, dtype=torch.float64) * 3
    ranks = torch.multinomial(1.0 / torch.arange(1, num_classes + 1, dtype=torch.float64), num_rois,
                              replacement=True, generator=generator)
    labels = torch.where(torch.rand(num_rois, generator=generator) < 0.25, num_classes, ranks)
    return logits.requires_grad_(), labels


@pytest.mark.parametrize("num_classes, num_rois, params", [
    (8, 64, {}), (60, 256, {}), (1203, 128, {}), (20, 128, {"gamma": 6, "mu": 0.5, "alpha": 2.0})])
def test_eqlv2_matches_official_over_training_steps(official_eqlv2, num_classes, num_rois, params):
    ours = make_loss("eqlv2", num_classes, **params).double().train()
    theirs = official_eqlv2.EQLV2Loss(num_classes=num_classes, **params).double()
    for step in range(20):
        logits, labels = long_tail_batch(num_classes, num_rois, step)
        if step == 7:
            labels[:] = num_classes  # an all-background batch in between
        value = ours(logits, labels)["loss_cls"]
        expected = theirs(logits, labels)
        assert_value_and_gradient_close(value, expected, logits, rtol=1e-13, grad_rtol=1e-11, grad_atol=1e-17)
        for buffer in ("pos_grad", "neg_grad", "pos_neg"):
            torch.testing.assert_close(getattr(ours, buffer), getattr(theirs, buffer), rtol=1e-12, atol=0)
    weights = ours.column_weights()[1][:num_classes]
    assert weights.max() > 2 * weights.min()  # the classes were re-weighted apart


@pytest.mark.parametrize("test_with_obj", [True, False])
def test_eqlv2_scores_are_officials(official_eqlv2, test_with_obj):
    ours = make_loss("eqlv2", 6, test_with_obj=test_with_obj).double()
    theirs = official_eqlv2.EQLV2Loss(num_classes=6, test_with_obj=test_with_obj).double()
    logits, _ = make_batch(ours, 20)
    torch.testing.assert_close(ours.scores(logits), theirs.get_activation(logits.detach().clone()), rtol=0, atol=0)


def test_eqlv2_state_is_checkpointed_and_frozen_in_eval():
    loss = make_loss("eqlv2", 5).train()
    for step in range(3):
        loss(*long_tail_batch(5, 30, step))
    state = loss.state_dict()
    assert set(state) == {"pos_grad", "neg_grad", "pos_neg"} and state["pos_grad"].dtype == torch.float64
    restored = make_loss("eqlv2", 5)
    restored.load_state_dict(state)
    logits, labels = long_tail_batch(5, 30, 9)
    torch.testing.assert_close(restored(logits, labels), loss(logits, labels), rtol=0, atol=0)
    torch.testing.assert_close(restored.state_dict(), loss.state_dict(), rtol=0, atol=0)
    loss.eval()
    frozen = {key: value.clone() for key, value in loss.state_dict().items()}
    loss(logits, labels)
    torch.testing.assert_close(loss.state_dict(), frozen, rtol=0, atol=0)


# --- Federated loss ----------------------------------------------------------------------------

def detectron2_fed_formula(logits, labels, fed_classes):
    """Detectron2's sigmoid_cross_entropy_loss with use_fed_loss, for a given set of classes: a
    one-hot over K + 1 cut to K, BCE weighted by the 0/1 mask of the set, summed, divided by N."""
    num_rois, num_classes = logits.shape
    target = torch.zeros(num_rois, num_classes + 1, dtype=logits.dtype)
    target[range(num_rois), labels] = 1
    mask = torch.zeros(num_classes + 1, dtype=logits.dtype)
    mask[fed_classes] = 1
    weight = mask[:num_classes].view(1, num_classes).expand(num_rois, num_classes)
    cls_loss = F.binary_cross_entropy_with_logits(logits, target[:, :num_classes], reduction="none")
    return torch.sum(cls_loss * weight) / num_rois


@pytest.mark.parametrize("num_classes, num_rois, num_sampled", [(12, 40, 5), (1203, 512, 50), (30, 200, 3)])
def test_fed_is_detectron2s_formula_for_its_sampled_set(num_classes, num_rois, num_sampled):
    loss = make_loss("fed", num_classes, num_sampled_classes=num_sampled).double().eval()
    logits, labels = make_batch(loss, num_rois, seed=3, scale=4.0)
    selected = loss.sample_classes(labels, loss.step_generator(logits.device))
    value = loss(logits, labels)["loss_cls"]  # eval mode: the same draw as sample_classes above
    expected = detectron2_fed_formula(logits, labels, torch.nonzero(selected).squeeze(1))
    grad = assert_value_and_gradient_close(value, expected, logits, rtol=1e-13, grad_rtol=1e-11, grad_atol=1e-17)
    assert (grad[:, ~selected] == 0).all() and (grad[:, selected] != 0).all()


def test_fed_set_holds_the_present_classes_and_fills_up_to_the_limit():
    loss = make_loss("fed", 100, num_sampled_classes=20)
    generator = torch.Generator().manual_seed(0)
    for labels in (torch.tensor([3, 3, 100]), torch.tensor([3, 3, 7]), torch.arange(0, 100, 4),
                   torch.arange(0, 101, 4), torch.tensor([100, 100])):
        selected = loss.sample_classes(labels, generator)
        assert selected[labels[labels < 100]].all()
        # Background, when present, takes one of the 20 places (Detectron2's torch.unique).
        assert int(selected.sum()) == max(20, len(set(labels.tolist()))) - int((labels == 100).any())


def test_fed_never_samples_a_class_without_weight():
    freq = torch.tensor([0.5, 0.0, 0.2, 0.0, 0.1])
    loss = make_loss("fed", 5, class_freq=freq, num_sampled_classes=4)
    generator = torch.Generator().manual_seed(1)
    for _ in range(50):
        selected = loss.sample_classes(torch.tensor([3, 3]), generator)
        assert selected.tolist() == [True, False, True, True, True]


def successive_sampling_inclusion(weights, present, size):
    """P(class in S) when Detectron2 draws size - |present| classes one by one, each with
    probability proportional to its weight among those not drawn yet (torch.multinomial without
    replacement), computed exactly over every draw order."""
    candidates = [j for j in range(len(weights)) if j not in present]
    inclusion = [1.0 if j in present else 0.0 for j in range(len(weights))]
    for order in itertools.permutations(candidates, size - len(present)):
        prob, remaining = 1.0, sum(weights[j] for j in candidates)
        for j in order:
            prob *= weights[j] / remaining
            remaining -= weights[j]
        for j in order:
            inclusion[j] += prob
    return inclusion


def test_fed_sampling_has_detectron2s_distribution():
    """freq^0.5 weights, one present class, sets of 3: inclusion frequencies over 4000 draws
    within 4.5 standard errors of the exact successive-sampling probabilities."""
    freq = torch.tensor([0.64, 0.25, 0.09, 0.04, 0.01, 0.16])
    loss = make_loss("fed", 6, class_freq=freq, num_sampled_classes=3)
    labels = torch.tensor([5, 5])
    generator = torch.Generator().manual_seed(7)
    draws = 4000
    counts = sum(loss.sample_classes(labels, generator).double() for _ in range(draws))
    exact = torch.tensor(successive_sampling_inclusion(freq.sqrt().tolist(), {5}, 3), dtype=torch.float64)
    standard_error = (exact * (1 - exact) / draws).sqrt().clamp(min=1e-12)
    assert ((counts / draws - exact).abs() <= 4.5 * standard_error).all(), (counts / draws, exact)


def test_fed_draws_are_seeded_advance_in_training_and_resume_exactly():
    loss = make_loss("fed", 200, num_sampled_classes=10).train()
    logits, labels = make_batch(loss, 16, dtype=torch.float32)
    first = [loss(logits, labels)["loss_cls"] for _ in range(3)]
    assert len({value.item() for value in first}) == 3  # a new draw each training step
    state = loss.state_dict()
    assert state["_extra_state"].tolist() == [3]
    continued = [loss(logits, labels)["loss_cls"] for _ in range(3)]
    resumed = make_loss("fed", 200, num_sampled_classes=10).train()
    resumed.load_state_dict(state)
    assert [resumed(logits, labels)["loss_cls"] for _ in range(3)] == continued
    again = make_loss("fed", 200, num_sampled_classes=10).train()
    assert [again(logits, labels)["loss_cls"] for _ in range(3)] == first  # the seed fixes the stream
    other_seed = make_loss("fed", 200, num_sampled_classes=10, seed=1).train()
    assert [other_seed(logits, labels)["loss_cls"] for _ in range(3)] != first
    loss.eval()
    assert loss(logits, labels)["loss_cls"] == loss(logits, labels)["loss_cls"] and loss.steps == 6


D2SRC_CHECK = r"""
import json, sys
import torch
import detectron2
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from suite.losses import build_loss

assert detectron2.__file__.startswith(sys.argv[1]), detectron2.__file__
results = []
for num_classes, num_rois, num_sampled, seed in ((12, 40, 5, 0), (1203, 512, 50, 1), (30, 200, 3, 2)):
    freq = 0.05 / torch.arange(1, num_classes + 1, dtype=torch.float64)
    ours = build_loss("fed", num_classes, class_freq=freq, num_sampled_classes=num_sampled).double().eval()
    theirs = FastRCNNOutputLayers(
        ShapeSpec(channels=8), box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)),
        num_classes=num_classes, use_sigmoid_ce=True, use_fed_loss=True, fed_loss_num_classes=num_sampled,
        get_fed_loss_cls_weights=lambda: freq.float() ** 0.5).double()
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(num_rois, num_classes, generator=generator, dtype=torch.float64) * 4).requires_grad_()
    labels = torch.randint(0, num_classes + 1, (num_rois,), generator=generator)
    selected = ours.sample_classes(labels, ours.step_generator(logits.device))
    # Detectron2's own loss, with its sampler's draw replaced by ours (the formula under test is
    # everything around the draw); its classifier has a K + 1-th column that the loss never reads.
    theirs.get_fed_loss_classes = lambda *args, **kwargs: torch.nonzero(selected).squeeze(1)
    padded = torch.cat([logits, torch.zeros(num_rois, 1, dtype=logits.dtype)], dim=1)
    expected = theirs.sigmoid_cross_entropy_loss(padded, labels)
    value = ours(logits, labels)["loss_cls"]
    grad, = torch.autograd.grad(value, logits)
    expected_grad, = torch.autograd.grad(expected, logits)
    # Detectron2's own sampler keeps every present class and fills up to the limit, counting
    # background (in torch.unique of the labels) as one of the places: as many classes as ours.
    own = theirs.__class__.get_fed_loss_classes(theirs, labels, num_sampled, num_classes, theirs.fed_loss_cls_weights)
    present = set(labels[labels < num_classes].tolist())
    results.append({
        "value": [value.item(), expected.item()],
        "grad_max_abs_diff": (grad - expected_grad).abs().max().item(),
        "grad_max_abs": expected_grad.abs().max().item(),
        "own_sampler": [present <= set(own.tolist()), int(selected.sum()) == int((own < num_classes).sum())],
    })
print(json.dumps(results))
"""


@pytest.mark.d2_source
def test_fed_matches_a_detectron2_source_tree():
    """Detectron2's current FastRCNNOutputLayers (use_sigmoid_ce, use_fed_loss) from the tree named
    by SUITE_D2_SOURCE, in a subprocess whose PYTHONPATH puts that tree first."""
    d2src = os.path.realpath(os.environ["SUITE_D2_SOURCE"])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([d2src, str(REPO)]))
    run = subprocess.run([sys.executable, "-c", D2SRC_CHECK, d2src], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    for result in json.loads(run.stdout.strip().splitlines()[-1]):
        ours, theirs = result["value"]
        assert ours == pytest.approx(theirs, rel=1e-13)
        assert result["grad_max_abs_diff"] <= 1e-11 * result["grad_max_abs"]
        assert all(result["own_sampler"])
