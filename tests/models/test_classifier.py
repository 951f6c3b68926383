"""LotteryClassifier and MLP."""

import pytest
import torch
from conftest import lean_trainer, loader, tiny_images
from torch import nn

from lth_lightning import MLP, LotteryClassifier


def test_mlp_default_is_the_seed_network():
    net = MLP()
    assert [(m.in_features, m.out_features) for m in net.layers] == [(784, 256), (256, 128), (128, 32), (32, 10)]
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert net(torch.zeros(3, 784)).shape == (3, 10)


@pytest.mark.parametrize(
    ("sizes", "message"),
    [((784,), "needs at least an input and an output width"), ((784, 0, 10), "must be positive integers")],
)
def test_mlp_rejects_bad_sizes(sizes, message):
    with pytest.raises(ValueError, match=message):
        MLP(sizes)


def test_mlp_glorot_normal_is_frankle_and_carbins_gaussian_glorot_and_survives_reinitialization():
    from lth_lightning.experiment.controls.at_init import reinitialized

    torch.manual_seed(0)
    net = MLP((784, 300, 100, 10), init="glorot_normal")
    for layer in net.layers:  # the sample std of a normal of variance 2 / (fan_in + fan_out), within 4 std. errors
        expected = (2 / (layer.in_features + layer.out_features)) ** 0.5
        assert float(layer.weight.std()) == pytest.approx(expected, rel=4 / (2 * layer.weight.numel()) ** 0.5)
        assert float(layer.weight.mean()) == pytest.approx(0.0, abs=3 * expected / layer.weight.numel() ** 0.5)
        assert bool((layer.bias == 0).all())
    default = MLP((784, 300, 100, 10))
    bound = 1 / 784**0.5  # PyTorch's default: uniform within 1/sqrt(fan_in), so never Gaussian tails
    assert float(default.layers[0].weight.abs().max()) <= bound < float(net.layers[0].weight.abs().max())
    fresh = reinitialized(net, seed=3)  # the random-reinit control draws from the same scheme
    weight = fresh["layers.0.weight"]
    assert float(weight.std()) == pytest.approx((2 / (784 + 300)) ** 0.5, rel=0.03)
    assert not torch.equal(weight, net.layers[0].weight) and bool((fresh["layers.0.bias"] == 0).all())
    with pytest.raises(ValueError, match=r"`init` must be one of 'default', 'glorot_normal', got 'xavier'"):
        MLP(init="xavier")  # type: ignore[arg-type]


def test_accuracy_is_a_hand_count_over_the_whole_test_set(tmp_path):
    torch.manual_seed(0)
    data = tiny_images(103, seed=1)  # 103 examples, batches of 10: the last batch is partial
    model = LotteryClassifier(net=MLP((64, 16, 4)), lr=1e-2)
    trainer = lean_trainer(tmp_path, max_epochs=2)
    trainer.fit(model, loader(data, 10, shuffle=True), loader(data, 10))
    val = trainer.validate(model, loader(data, 10), verbose=False)[0]
    test = trainer.test(model, loader(data, 10), verbose=False)[0]
    x, y = data.tensors
    with torch.no_grad():
        logits = model(x)
    correct = int((logits.argmax(1) == y).sum())
    assert test["test/acc"] == pytest.approx(correct / 103, abs=1e-6)
    assert val["val/acc"] == pytest.approx(correct / 103, abs=1e-6)
    assert test["test/loss"] == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-5)


def test_train_loss_is_logged_per_epoch_only(tmp_path):
    from conftest import MemoryLogger

    logger = MemoryLogger()
    model = LotteryClassifier(net=MLP((64, 8, 4)), lr=1e-2)
    trainer = lean_trainer(tmp_path, max_epochs=3, logger=logger, log_every_n_steps=1)
    trainer.fit(model, loader(tiny_images(64), 8), loader(tiny_images(32, seed=2), 8))
    train = [m for _, m in logger.rows if "train/loss" in m]
    val = [m for _, m in logger.rows if "val/acc" in m]
    assert len(train) == 3 and len(val) == 3
    assert all(set(m) <= {"train/loss", "epoch"} for m in train)


def test_train_loss_is_the_example_weighted_mean_of_each_epoch(tmp_path):
    import lightning.pytorch as pl
    from conftest import MemoryLogger

    class BatchLosses(pl.Callback):
        def __init__(self) -> None:
            self.epochs: list[list[tuple[float, int]]] = []

        def on_train_epoch_start(self, trainer, pl_module):
            self.epochs.append([])

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.epochs[-1].append((outputs["loss"].item(), batch[1].shape[0]))

    logger, seen = MemoryLogger(), BatchLosses()
    model = LotteryClassifier(net=MLP((64, 8, 4)), lr=1e-2)
    trainer = lean_trainer(tmp_path, max_epochs=2, logger=logger, callbacks=[seen])
    trainer.fit(model, loader(tiny_images(30), 8, shuffle=True))  # batches of 8, 8, 8 and 6
    logged = [m["train/loss"] for _, m in logger.rows if "train/loss" in m]
    assert [n for _, n in seen.epochs[0]] == [8, 8, 8, 6]
    expected = [sum(loss * n for loss, n in epoch) / 30 for epoch in seen.epochs]
    assert logged == pytest.approx(expected, rel=1e-6)
    assert expected[0] != pytest.approx(expected[1], rel=1e-3)  # the two epochs really differ


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_optimizers(optimizer):
    model = LotteryClassifier(net=MLP((4, 2)), lr=0.5, optimizer=optimizer, weight_decay=0.01)
    opt = model.configure_optimizers()
    assert opt.defaults["lr"] == 0.5 and opt.defaults["weight_decay"] == 0.01
    assert type(opt).__name__.lower() == optimizer
    assert opt.defaults["fused"] is True  # CPU parameters: torch's fused kernel
    assert LotteryClassifier(net=MLP((4, 2)), optimizer=optimizer, fused=False).configure_optimizers().defaults[
        "fused"
    ] in (None, False)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_fused_optimizer_trains_like_the_default_one(optimizer):
    """The fused kernel is the same update as torch's per-tensor one, up to rounding."""
    data = tiny_images(64, seed=3)
    params = []
    for fused in (None, False):
        torch.manual_seed(0)
        model = LotteryClassifier(net=MLP((64, 16, 4)), lr=1e-2, optimizer=optimizer, weight_decay=0.01, fused=fused)
        opt = model.configure_optimizers()
        for x, y in loader(data, 8, shuffle=False):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.manual_seed(0)
    init = torch.cat([p.detach().flatten() for p in MLP((64, 16, 4)).parameters()])
    assert (params[0] - init).abs().max() > 1e-3  # it trained
    torch.testing.assert_close(params[0], params[1], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, "`lr` must be > 0, got 0.0"),
        ({"optimizer": "lion"}, r"`optimizer` must be one of \('adam', 'adamw', 'sgd'\), got 'lion'"),
        ({"weight_decay": -1.0}, "`weight_decay` must be >= 0, got -1.0"),
        ({"momentum": 1.0}, r"`momentum` must be in \[0, 1\), got 1.0"),
        ({"num_classes": 1}, "`num_classes` must be >= 2, got 1"),
        ({"fused": "yes"}, "`fused` must be None, True or False, got 'yes'"),
        ({"net": nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())}, "`num_classes` is required"),
    ],
)
def test_classifier_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LotteryClassifier(**kwargs)
