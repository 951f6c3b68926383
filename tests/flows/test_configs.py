"""The shipped configs against the papers they name: every recipe field, restated from the paper."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))

# Frankle & Carbin, "The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural Networks", ICLR 2019,
# restated from the paper (where each figure comes from is beside it).
FRANKLE_CARBIN_2019 = {
    "LeNet-300-100": {
        "architecture": [784, 300, 100, 10],  # Figure 2: fc300, fc100, fc10 on 28x28 MNIST
        "initialization": "glorot_normal",  # Figure 2: "Gaussian Glorot"
        "optimizer": "adam",  # Figure 2
        "learning_rate": 1.2e-3,  # Figure 2
        "batch": 60,  # Figure 2
        "iterations": 50_000,  # Figure 2: 50K iterations of training
        "pruning": "layerwise",  # Section 2/4: each layer pruned on its own (global only for VGG-19, ResNet-18)
        "rate_fc": 0.2,  # Figure 2: pruning rate fc 20%
        "rate_output": 0.1,  # Figure 2 footnote: the output layer at half the rate
        "rewind_iteration": 0,  # Section 2: reset to the original initialization
        "validation_interval": 100,  # Figure 3/4 captions: early stopping read on validation every 100 iterations
    },
}
RECIPES = {"mnist_lenet300.yaml": ("Frankle & Carbin", FRANKLE_CARBIN_2019["LeNet-300-100"])}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_names_its_paper(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# Paper: ") and "ICLR 2019" in first, first


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_a_papers_config_is_its_recipe_field_by_field(name):
    paper, recipe = RECIPES[name]
    text = (REPO / "configs" / name).read_text()
    assert paper in text.splitlines()[0]
    config = yaml.safe_load(text)
    model, data, lottery = config["model"]["init_args"], config["data"]["init_args"], config["lottery"]
    net = model["net"]["init_args"]
    got = {
        "architecture": net["sizes"],
        "initialization": net.get("init", "default"),
        "optimizer": model["optimizer"],
        "learning_rate": model["lr"],
        "batch": data["batch_size"],
        "iterations": config["trainer"]["max_steps"],
        "pruning": lottery["scope"],
        "rate_fc": lottery["amount"],
        "rate_output": lottery["rates"][f"net.layers.{len(net['sizes']) - 2}.weight"],
        "rewind_iteration": lottery.get("rewind_step", 0),
        "validation_interval": config["trainer"]["val_check_interval"],
    }
    assert got == recipe
    assert len(lottery["rates"]) == 1  # no other layer at another rate


def _validations(trainer: dict, epoch_batches: int) -> int:
    """How often a training validates under Lightning's settings (restated: an integer ``val_check_interval`` counts
    training batches, a float a fraction of the epoch; with ``check_val_every_n_epoch: null`` it counts across
    epochs)."""
    limit = trainer.get("limit_train_batches", 1.0)
    batches = min(limit, epoch_batches) if isinstance(limit, int) else int(limit * epoch_batches)
    interval = trainer.get("val_check_interval", 1.0)
    if trainer.get("check_val_every_n_epoch", 1) is None:
        return trainer["max_steps"] // interval
    per_epoch = batches // interval if isinstance(interval, int) else round(1 / interval)
    return trainer["max_epochs"] // trainer.get("check_val_every_n_epoch", 1) * per_epoch


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates_often_enough_for_early_stopping_to_choose(path):
    config = yaml.safe_load(path.read_text())
    data = config["data"]["init_args"]
    epoch_batches = (60_000 - data["val_size"]) // data["batch_size"]  # MNIST and Fashion-MNIST: 60,000 to train
    assert _validations(config["trainer"], epoch_batches) >= 5
