"""The loss interface: construction, shapes, scores, input errors, empty and degenerate batches."""

import inspect

import pytest
import torch
import torch.nn.functional as F

from suite.losses import LOSSES, SigmoidClassificationLoss, build_loss, trainable_losses

from losses_helpers import LOSS_NAMES, make_batch, make_loss


def test_registry_holds_every_loss():
    assert set(LOSSES) == set(LOSS_NAMES)


def test_unknown_loss_lists_known_ones():
    with pytest.raises(ValueError, match="unknown loss 'softmax'.*ce, eql, eqlv2, fed, focal, seesaw"):
        build_loss("softmax", 10)


def test_unknown_parameter_is_a_value_error():
    with pytest.raises(ValueError, match="seesaw: bad parameters"):
        build_loss("seesaw", 10, r=0.5)


@pytest.mark.parametrize("num_classes", [0, -3, 2.5, True])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        build_loss("ce", num_classes)


@pytest.mark.parametrize("name", ["eql", "fed"])
def test_frequency_losses_need_class_freq(name):
    with pytest.raises(ValueError, match=f"{name}: class_freq is required"):
        build_loss(name, 10)
    with pytest.raises(ValueError, match="one entry per class"):
        build_loss(name, 10, class_freq=[0.1] * 9)
    with pytest.raises(ValueError, match="finite and >= 0"):
        build_loss(name, 3, class_freq=[0.1, float("nan"), 0.2])


@pytest.mark.parametrize("name, params, message", [
    ("eqlv2", {"alpha": -1.0}, "gamma and alpha must be >= 0"),
    ("fed", {"num_sampled_classes": 0}, "num_sampled_classes must be a positive int"),
    ("fed", {"freq_power": -0.5}, "freq_power must be >= 0"),
    ("fed", {"seed": -1}, "seed must be an int >= 0"),
])
def test_bad_parameters_name_the_parameter(name, params, message):
    with pytest.raises(ValueError, match=f"{name}: {message}"):
        make_loss(name, 10, **params)


@pytest.mark.parametrize("name,expected", [("ce", 11), ("focal", 10), ("eql", 10), ("eqlv2", 11), ("fed", 10), ("seesaw", 12)])
def test_num_logits(name, expected):
    assert make_loss(name, 10).num_logits == expected


def test_term_names():
    assert set(make_loss("seesaw", 4)(*make_batch(make_loss("seesaw", 4), 8))) == {
        "loss_cls_classes", "loss_cls_objectness"}
    for name in ("ce", "focal", "eql", "eqlv2", "fed"):
        loss = make_loss(name, 4)
        assert set(loss(*make_batch(loss, 8))) == {"loss_cls"}


def test_ce_is_torch_cross_entropy():
    loss = make_loss("ce", 7)
    logits, labels = make_batch(loss, 50)
    torch.testing.assert_close(loss(logits, labels)["loss_cls"], F.cross_entropy(logits, labels), rtol=0, atol=0)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_scores_are_probabilities_background_last(name):
    loss = make_loss(name, 6)
    logits, _ = make_batch(loss, 30)
    scores = loss.scores(logits)
    assert scores.shape == (30, 7)
    assert not scores.requires_grad
    assert ((scores >= 0) & (scores <= 1)).all()
    if name in ("ce", "seesaw"):  # softmax-based: one distribution per RoI
        torch.testing.assert_close(scores.sum(1), torch.ones(30, dtype=scores.dtype))


def test_seesaw_scores_follow_official_rule():
    """Class softmax times foreground probability; background = objectness background probability."""
    loss = make_loss("seesaw", 5)
    logits, _ = make_batch(loss, 9)
    objectness = F.softmax(logits[:, -2:], dim=1)
    expected = torch.cat([F.softmax(logits[:, :5], 1) * objectness[:, :1], objectness[:, 1:]], 1)
    torch.testing.assert_close(loss.scores(logits), expected.detach())


def test_seesaw_accuracies():
    loss = make_loss("seesaw", 3)
    logits = torch.tensor([[5.0, 0, 0, 9, 0], [0, 5, 0, 0, 9], [0, 0, 5, 9, 0], [5, 0, 0, 0, 9]])
    labels = torch.tensor([0, 1, 1, 3])
    stats = loss.accuracies(logits, labels)
    # class argmax right for the foreground RoIs 0 and 1, wrong for RoI 2
    assert stats["acc_classes"].item() == pytest.approx(200 / 3)
    # objectness right for RoIs 0 (fg), 2 (fg) and 3 (bg), wrong for RoI 1 (fg scored bg)
    assert stats["acc_objectness"].item() == pytest.approx(75.0)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_label_out_of_range(name):
    loss = make_loss(name, 5)
    logits, labels = make_batch(loss, 10)
    labels[3] = 6
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\].*\[\d+, 6\]"):
        loss(logits, labels)
    labels[3] = -1
    with pytest.raises(ValueError, match="labels must lie"):
        loss(logits, labels)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_wrong_width(name):
    loss = make_loss(name, 5)
    logits = torch.randn(10, loss.num_logits + 1)
    with pytest.raises(ValueError, match=f"{logits.shape[1]} columns but this loss needs num_logits = {loss.num_logits}"):
        loss(logits, torch.zeros(10, dtype=torch.int64))


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_mismatched_rows_and_bad_types(name):
    loss = make_loss(name, 5)
    logits = torch.randn(10, loss.num_logits)
    with pytest.raises(ValueError, match="N = 10 rows but labels have 9"):
        loss(logits, torch.zeros(9, dtype=torch.int64))
    with pytest.raises(ValueError, match="1-D int64"):
        loss(logits, torch.zeros(10, dtype=torch.int32))
    with pytest.raises(ValueError, match="2-D float"):
        loss(logits[0], torch.zeros(10, dtype=torch.int64))


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_empty_batch_gives_zero_connected_to_graph(name):
    loss = make_loss(name, 5)
    logits = torch.randn(0, loss.num_logits, requires_grad=True)
    terms = loss(logits, torch.zeros(0, dtype=torch.int64))
    total = sum(terms.values())
    assert total.item() == 0.0
    total.backward()
    assert logits.grad is not None and logits.grad.shape == (0, loss.num_logits)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_all_background_batch_is_finite(name):
    loss = make_loss(name, 5)
    logits, labels = make_batch(loss, 20)
    labels[:] = 5
    total = sum(loss(logits, labels).values())
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(logits.grad).all()
    if name == "seesaw":
        assert loss(logits, labels)["loss_cls_classes"].item() == 0.0


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_computes_in_float32(name, dtype):
    loss = make_loss(name, 8)
    linear = torch.nn.Linear(16, loss.num_logits)
    features = torch.randn(32, 16)
    labels = make_batch(loss, 32)[1]
    with torch.autocast("cpu", dtype=dtype):
        logits = linear(features)
        terms = loss(logits, labels)
    assert logits.dtype == dtype
    for value in terms.values():
        assert value.dtype == torch.float32 and torch.isfinite(value)
    sum(terms.values()).backward()
    assert torch.isfinite(linear.weight.grad).all()


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_extreme_logits_stay_finite(name):
    loss = make_loss(name, 6)
    logits, labels = make_batch(loss, 40, dtype=torch.float32)
    with torch.no_grad():
        logits.copy_(torch.sign(logits) * 1e4)
    total = sum(loss(logits, labels).values())
    total.backward()
    assert torch.isfinite(total)
    assert torch.isfinite(logits.grad).all()
    assert torch.isfinite(loss.scores(logits)).all()


def test_the_sigmoid_losses_share_their_base():
    """focal, EQL and the federated loss: num_classes logits, their summed loss over N."""
    for name in ("focal", "eql", "fed"):
        loss = make_loss(name, 7)
        assert isinstance(loss, SigmoidClassificationLoss) and loss.num_logits == 7
        logits, labels = make_batch(loss, 5, dtype=torch.float64)
        assert torch.equal(loss(logits, labels)["loss_cls"], loss._sum(logits, labels) / 5)


def test_a_federated_loss_draws_nothing_on_an_empty_batch():
    """As Detectron2, whose loss returns before its draw: the next batch draws what it would have."""
    loss, fresh = make_loss("fed", 50, num_sampled_classes=5).train(), make_loss("fed", 50, num_sampled_classes=5).train()
    logits, labels = make_batch(loss, 8, dtype=torch.float32)
    loss(logits[:0], labels[:0])
    assert loss.steps == 0 and torch.equal(loss(logits, labels)["loss_cls"], fresh(logits, labels)["loss_cls"])


@pytest.mark.parametrize("name", sorted(trainable_losses()))
def test_a_loss_declares_its_config_keys_as_its_constructor_names_them(name):
    """Every declared key names a constructor parameter, and class_freq is declared exactly by the
    losses whose constructor takes it."""
    loss = trainable_losses()[name]
    parameters = inspect.signature(loss.__init__).parameters
    assert set(loss.config_keys.values()) <= set(parameters) - {"self", "num_classes", "class_freq"}
    assert (loss.config_node is None) == (not loss.config_keys)
    assert set(loss.implementation_params) <= set(loss.config_keys.values())
    assert loss.needs_class_freq == ("class_freq" in parameters)
