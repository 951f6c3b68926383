"""LotteryTicketCallback through a real Trainer."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from conftest import ConvNet, MemoryLogger, lean_trainer, loader, tiny_images
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lth_lightning import LotteryClassifier, LotteryTicketCallback
from lth_lightning.pruning.magnitude import keep_count

PRUNABLE = ["conv.weight", "fc1.weight", "head.weight"]


class Probe(pl.Callback):
    """Records the module state when each fit starts (after the lottery callback ran)."""

    def __init__(self, step: int | None = None) -> None:
        self.at_fit_start: list[dict[str, torch.Tensor]] = []
        self.step = step
        self.at_step: dict[str, torch.Tensor] | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.at_fit_start.append({k: v.clone() for k, v in pl_module.state_dict().items()})

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self.step is not None and self.at_step is None and trainer.global_step == self.step:
            self.at_step = {k: v.clone() for k, v in pl_module.state_dict().items()}


def _fit(model, cb, tmp_path, data, extra=(), **kwargs):
    trainer = lean_trainer(tmp_path, callbacks=[cb, *extra], **kwargs)
    trainer.fit(model, loader(data, shuffle=True), loader(data))
    return trainer


def test_three_rounds_on_a_users_own_conv_module(tmp_path, data):
    """End to end: density per round, zeros stay zero under Adam + weight decay, exact rewind."""
    torch.manual_seed(0)
    model = ConvNet(weight_decay=0.1)
    cb = LotteryTicketCallback(amount=0.3, verbose=False)
    probe = Probe()
    totals = {n: p.numel() for n, p in model.named_parameters() if n in PRUNABLE}
    total = sum(totals.values())
    init = {k: v.clone() for k, v in model.state_dict().items()}
    for r in range(3):
        _fit(model, cb, tmp_path, data, extra=[probe], max_epochs=2)
        assert cb.round == r and cb.phase == "pruned"
        # The trained weights of this round respect the masks of this round: pruned ones are exactly 0.
        trained_masks = probe.at_fit_start[r]
        params = dict(model.named_parameters())
        for name in PRUNABLE:
            started_zero = trained_masks[name] == 0
            assert torch.all(params[name][started_zero] == 0), name
        # Next masks: exact density, computed from the trained magnitudes.
        alive = sum(int(m.sum()) for m in cb.masks.values())
        assert alive == keep_count(total, 0.3, r + 1)
    assert sorted(cb.masks) == sorted(PRUNABLE)
    # The snapshot is the initial state, biases and BatchNorm buffers included.
    snapshot = cb.snapshot
    assert snapshot is not None and snapshot.keys() == init.keys()
    assert all(torch.equal(snapshot[k], init[k]) for k in init)
    # Each later round started from the snapshot, masked; unpruned tensors fully rewound.
    history = cb.history
    for r in (1, 2):
        started = probe.at_fit_start[r]
        for name, value in init.items():
            if name in PRUNABLE:
                mask = started[name] != 0
                assert torch.equal(started[name][mask], value[mask])
            else:
                assert torch.equal(started[name], value), name
    assert [h["round"] for h in history] == [0, 1, 2]
    assert [round(h["density"], 6) for h in history] == [
        1.0,
        round(keep_count(total, 0.3, 1) / total, 6),
        round(keep_count(total, 0.3, 2) / total, 6),
    ]
    # Norm layers and biases are never pruned.
    assert "bn.weight" not in cb.masks and "fc1.bias" not in cb.masks


def test_masks_only_shrink_and_global_picks_across_layers(tmp_path, data):
    torch.manual_seed(1)
    model = ConvNet()
    cb = LotteryTicketCallback(amount=0.5, verbose=False)
    previous = None
    for _ in range(2):
        _fit(model, cb, tmp_path, data)
        masks = cb.masks
        if previous is not None:
            for name in masks:
                assert not bool((masks[name] & ~previous[name]).any())
        previous = masks
    # Global: every survivor's trained magnitude >= every weight pruned this round.
    params = dict(model.named_parameters())
    kept = torch.cat([params[n].detach().abs()[masks[n]] for n in masks])
    alive_before = {n: params[n].detach() != 0 for n in masks}
    dropped = torch.cat([params[n].detach().abs()[alive_before[n] & ~masks[n]] for n in masks])
    assert kept.min() >= dropped.max()
    # Global scope really is global: the layers end at different densities.
    densities = {n: m.float().mean().item() for n, m in masks.items()}
    assert max(densities.values()) - min(densities.values()) > 0.05


def test_layerwise_and_rate_overrides(tmp_path, data):
    torch.manual_seed(2)
    model = ConvNet()
    cb = LotteryTicketCallback(amount=0.2, scope="layerwise", rates={"head.*": 0.1}, verbose=False)
    _fit(model, cb, tmp_path, data)
    _fit(model, cb, tmp_path, data)
    for name, mask in cb.masks.items():
        rate = 0.1 if name.startswith("head") else 0.2
        assert int(mask.sum()) == keep_count(mask.numel(), rate, 2)


def test_selected_parameters_by_glob(tmp_path, data):
    model = ConvNet()
    cb = LotteryTicketCallback(parameters=["fc*.weight", "conv.weight"], verbose=False)
    _fit(model, cb, tmp_path, data)
    assert sorted(cb.masks) == ["conv.weight", "fc1.weight"]


def test_test_after_fit_measures_the_trained_network(tmp_path, data):
    torch.manual_seed(3)
    model = LotteryClassifier(net=nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4)), lr=1e-2)
    cb = LotteryTicketCallback(amount=0.5, verbose=False)
    trainer = _fit(model, cb, tmp_path, data, max_epochs=3)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    result = trainer.test(model, loader(data), verbose=False)[0]
    # test() did not rewind or prune the weights that fit trained.
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in trained.items())
    with torch.no_grad():
        x, y = data.tensors
        hand = (model(x).argmax(1) == y).float().mean().item()
    assert result["test/acc"] == pytest.approx(hand, abs=1e-6)
    # A weight pruned by the next mask is still non-zero in the network that was tested.
    masks = cb.masks
    assert any(bool((trained[f"net.{k[4:]}"][~m] != 0).any()) for k, m in masks.items())


def test_pruned_weights_get_no_gradient_and_stay_zero_with_clipping(tmp_path, data):
    torch.manual_seed(4)
    model = ConvNet(weight_decay=0.5)
    cb = LotteryTicketCallback(amount=0.6, verbose=False)
    _fit(model, cb, tmp_path, data)

    seen: list[bool] = []

    class GradProbe(pl.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            params = dict(pl_module.named_parameters())
            seen.append(all(bool((params[n].grad[~m] == 0).all()) for n, m in cb.masks.items()))

    masks_round1 = cb.masks
    _fit(model, cb, tmp_path, data, extra=[GradProbe()], gradient_clip_val=0.01, max_epochs=2)
    assert seen and all(seen)
    params = dict(model.named_parameters())
    for name, mask in masks_round1.items():
        assert torch.all(params[name][~mask] == 0)


def test_late_rewinding_snapshots_after_k_steps(tmp_path, data):
    torch.manual_seed(5)
    model = ConvNet()
    cb = LotteryTicketCallback(amount=0.2, rewind_step=3, verbose=False)
    probe = Probe(step=3)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    _fit(model, cb, tmp_path, data, extra=[probe])
    snapshot = cb.snapshot
    assert snapshot is not None and probe.at_step is not None
    assert all(torch.equal(snapshot[k], probe.at_step[k]) for k in snapshot)
    assert not torch.equal(snapshot["fc1.weight"], init["fc1.weight"])
    # The next round rewinds to step 3, not to the init, and the snapshot is never retaken.
    probe2 = Probe(step=3)
    _fit(model, cb, tmp_path, data, extra=[probe2])
    started = probe2.at_fit_start[0]
    mask = started["fc1.weight"] != 0
    assert torch.equal(started["fc1.weight"][mask], snapshot["fc1.weight"][mask])
    assert all(torch.equal(cb.snapshot[k], snapshot[k]) for k in snapshot)


def test_rewind_step_beyond_first_round_is_a_clear_error(tmp_path, data):
    cb = LotteryTicketCallback(rewind_step=1000, verbose=False)
    with pytest.raises(ValueError, match=r"`rewind_step`=1000 is at or past the end of the training, which runs 6 opt"):
        _fit(ConvNet(), cb, tmp_path, data)
    assert cb.phase == "training" and cb.history == []


def test_a_first_round_stopped_before_rewind_step_is_a_clear_error(tmp_path, data):
    class StopAt2(pl.Callback):  # as EarlyStopping or max_time would, before the planned end
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            trainer.should_stop = trainer.global_step >= 2

    cb = LotteryTicketCallback(rewind_step=4, verbose=False)
    with pytest.raises(ValueError, match=r"`rewind_step`=4 is beyond the first round, which ran 2 optimizer steps"):
        _fit(ConvNet(), cb, tmp_path, data, extra=[StopAt2()])
    assert cb.phase == "training" and cb.history == []


def test_single_fit_with_one_trainer_is_one_round(tmp_path, data):
    model = ConvNet()
    cb = LotteryTicketCallback(amount=0.2, verbose=False)
    trainer = _fit(model, cb, tmp_path, data)
    assert cb.round == 0 and cb.phase == "pruned" and cb.density == pytest.approx(0.8, abs=1e-3)
    (tested,) = trainer.test(model, loader(data), verbose=False)  # still usable: it tests the module as it is now
    model.eval()  # (BatchNorm's running statistics, as in test)
    with torch.no_grad():
        x, y = data.tensors
        assert tested["test_loss"] == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-5)


def test_logs_round_and_densities_to_the_trainers_loggers(tmp_path, data):
    model = ConvNet()
    cb = LotteryTicketCallback(amount=0.5, verbose=False)
    loggers = []
    for _ in range(2):
        logger = MemoryLogger()
        loggers.append(logger)
        _fit(model, cb, tmp_path, data, logger=logger)
    rows = [m for logger in loggers for _, m in logger.rows if "lottery/round" in m]
    assert [r["lottery/round"] for r in rows] == [0.0, 1.0]
    assert rows[0]["lottery/density"] == 1.0
    assert rows[1]["lottery/density"] == pytest.approx(0.5, abs=1e-3)
    assert {f"lottery/density/{n}" for n in PRUNABLE} <= rows[1].keys()


def test_state_dict_round_trip_with_weights_only_load(tmp_path, data):
    model = ConvNet()
    cb = LotteryTicketCallback(amount=0.4, rates={"head.weight": 0.2}, verbose=False)
    _fit(model, cb, tmp_path, data)
    torch.save(cb.state_dict(), tmp_path / "state.pt")
    fresh = LotteryTicketCallback(amount=0.4, rates={"head.weight": 0.2}, verbose=False)
    fresh.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert (fresh.round, fresh.phase, fresh.history) == (cb.round, cb.phase, cb.history)
    assert all(torch.equal(fresh.masks[k], cb.masks[k]) for k in cb.masks)
    assert all(torch.equal(fresh.snapshot[k], cb.snapshot[k]) for k in cb.snapshot)


def test_checkpoint_mid_round_resumes_exactly(tmp_path, data):
    """Kill mid-experiment, restore into a fresh model/callback/Trainer: same masks and snapshot."""

    def run(model, cb, root, ckpt_path=None, save=False, max_epochs=4):
        extra = [ModelCheckpoint(dirpath=root, every_n_epochs=1, save_top_k=-1, filename="{epoch}")] if save else []
        trainer = lean_trainer(root, callbacks=[cb, *extra], max_epochs=max_epochs, enable_checkpointing=save)
        trainer.fit(model, loader(data), loader(data), ckpt_path=ckpt_path)

    torch.manual_seed(6)
    model = ConvNet()
    cb = LotteryTicketCallback(amount=0.3, verbose=False)
    run(model, cb, tmp_path / "a")
    run(model, cb, tmp_path / "b", save=True)  # round 1, checkpoints after every epoch
    expected_masks, expected_snapshot = cb.masks, cb.snapshot

    ckpt = tmp_path / "b" / "epoch=1.ckpt"
    fresh_model = ConvNet()
    fresh_cb = LotteryTicketCallback(amount=0.3, verbose=False)
    probe = Probe()
    trainer = lean_trainer(tmp_path / "c", callbacks=[fresh_cb, probe], max_epochs=4)
    trainer.fit(fresh_model, loader(data), loader(data), ckpt_path=ckpt)
    # Resumed mid-round: not rewound again, the checkpoint's trained weights were kept.
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    assert all(torch.equal(probe.at_fit_start[0][k], saved[k]) for k in saved)
    assert fresh_cb.round == 1 and fresh_cb.phase == "pruned"
    assert all(torch.equal(fresh_cb.masks[k], expected_masks[k]) for k in expected_masks)
    assert all(torch.equal(fresh_cb.snapshot[k], expected_snapshot[k]) for k in expected_snapshot)


def test_checkpoint_with_other_settings_or_model_is_refused(tmp_path, data):
    model = ConvNet()
    cb = LotteryTicketCallback(amount=0.3, verbose=False)
    _fit(model, cb, tmp_path, data)
    state = cb.state_dict()
    other = LotteryTicketCallback(amount=0.2, scope="layerwise", verbose=False)
    with pytest.raises(ValueError, match=r"configured differently \(amount: checkpoint 0.3 vs callback 0.2; scope"):
        other.load_state_dict(state)
    with pytest.raises(
        ValueError, match=r"Unsupported LotteryTicketCallback state version 99; expected one of \(1, 2\)"
    ):
        LotteryTicketCallback(amount=0.3).load_state_dict({**state, "version": 99})

    class Wider(ConvNet):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(96, 30)
            self.head = nn.Linear(30, 4)

    restored = LotteryTicketCallback(amount=0.3, verbose=False)
    restored.load_state_dict(state)
    with pytest.raises(
        ValueError,
        match=r"Mask for 'fc1.weight' has shape \(24, 96\) but the model's parameter has "
        r"shape \(30, 96\): the state comes from a different model",
    ):
        _fit(Wider(), restored, tmp_path, data)

    class Renamed(ConvNet):
        def __init__(self):
            super().__init__()
            del self.head
            self.out = nn.Linear(24, 4)

        def forward(self, x):
            return x

    restored = LotteryTicketCallback(amount=0.3, verbose=False)
    restored.load_state_dict(state)
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['head.weight'\] that the lottery masks were made for"):
        _fit(Renamed(), restored, tmp_path, data)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"amount": 0.0}, r"`amount` must be a float in the open interval \(0, 1\), got 0.0"),
        ({"amount": 1}, r"`amount` must be a float in the open interval \(0, 1\), got 1"),
        ({"amount": "0.2"}, r"`amount` must be a float in the open interval \(0, 1\), got '0.2'"),
        ({"scope": "local"}, "`scope` must be 'global' or 'layerwise', got 'local'"),
        ({"parameters": []}, r"`parameters` must be None or a non-empty list of names or glob patterns, got \[\]"),
        ({"parameters": "fc1.weight"}, "`parameters` must be None or a non-empty list of names .*, got 'fc1.weight'"),
        (
            {"rates": {"head.weight": 1.5}},
            r"`rates` must be .* floats in the open interval \(0, 1\), got \{'head.weight': 1.5\}",
        ),
        ({"rewind_step": -1}, "`rewind_step` must be an integer >= 0, got -1"),
        ({"rewind_step": 1.5}, "`rewind_step` must be an integer >= 0, got 1.5"),
        ({"snapshot_device": "gpu"}, "`snapshot_device` must be 'cpu' or 'module', got 'gpu'"),
    ],
)
def test_constructor_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LotteryTicketCallback(**kwargs)


def test_unknown_parameter_name_lists_what_exists(tmp_path, data):
    cb = LotteryTicketCallback(parameters=["fc9.weight"], verbose=False)
    with pytest.raises(
        ValueError, match=r"`parameters` entry 'fc9.weight' matches no parameter. Available: conv.weight, "
    ):
        _fit(ConvNet(), cb, tmp_path, data)
    cb = LotteryTicketCallback(rates={"tail.*": 0.1}, verbose=False)
    with pytest.raises(ValueError, match="`rates` entry 'tail.*' matches no parameter"):
        _fit(ConvNet(), cb, tmp_path, data)


def test_model_without_prunable_layers_is_refused(tmp_path):
    class Bare(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(4))

        def training_step(self, batch, batch_idx):
            return (self.scale * batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    ds = torch.utils.data.TensorDataset(torch.ones(8, 4))
    cb = LotteryTicketCallback(verbose=False)
    trainer = lean_trainer(tmp_path, callbacks=[cb])
    with pytest.raises(ValueError, match="found nothing to prune: .* parameters: scale"):
        trainer.fit(Bare(), torch.utils.data.DataLoader(ds, batch_size=4))


def test_torch_pruned_module_is_refused_not_double_masked(tmp_path, data):
    model = ConvNet()
    nn.utils.prune.l1_unstructured(model.fc1, "weight", amount=0.2)
    cb = LotteryTicketCallback(verbose=False)
    with pytest.raises(RuntimeError, match=r"Module\(s\) fc1 are already pruned with torch.nn.utils.prune"):
        _fit(model, cb, tmp_path, data)
    nn.utils.prune.remove(model.fc1, "weight")
    _fit(model, cb, tmp_path, data)  # after prune.remove it is accepted
    assert cb.phase == "pruned"


def test_no_references_to_modules_are_kept_between_fits(tmp_path, data):
    model = ConvNet()
    cb = LotteryTicketCallback(verbose=False)
    _fit(model, cb, tmp_path, data)
    assert not cb._enforcer.bound and cb._enforcer._device_masks == []


def test_repeated_fits_reuse_the_snapshot(tmp_path):
    data = tiny_images(48)
    torch.manual_seed(7)
    model = ConvNet()
    cb = LotteryTicketCallback(verbose=False)
    _fit(model, cb, tmp_path, data)
    first = cb.snapshot
    for _ in range(2):
        _fit(model, cb, tmp_path, data)
    assert all(torch.equal(cb.snapshot[k], first[k]) for k in first)


class _NoisySGD(torch.optim.SGD):
    """Not element-wise safe: moves every weight, pruned or not, after each step."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(0.01)
        return loss


@pytest.mark.parametrize("optimizer", ["adamw", "adam_l2", "noisy"])
def test_pruned_weights_are_zero_after_every_single_step(tmp_path, data, optimizer):
    torch.manual_seed(8)

    class Model(ConvNet):
        def configure_optimizers(self):
            if optimizer == "adamw":
                return torch.optim.AdamW(self.parameters(), lr=0.01, weight_decay=0.5)
            if optimizer == "adam_l2":
                return torch.optim.Adam(self.parameters(), lr=0.01, weight_decay=0.5)
            return _NoisySGD(self.parameters(), lr=0.01, momentum=0.9, weight_decay=0.5)

    model = Model()
    cb = LotteryTicketCallback(amount=0.5, verbose=False)
    _fit(model, cb, tmp_path, data)
    masks = cb.masks
    violations: list[int] = []

    class EveryStep(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            params = dict(pl_module.named_parameters())
            violations.extend(int((params[n][~m] != 0).sum()) for n, m in masks.items())

    _fit(model, cb, tmp_path, data, extra=[EveryStep()], max_epochs=2)
    assert len(violations) == 2 * 6 * len(masks) and sum(violations) == 0
    assert cb.enforcement == ("gradients+weights" if optimizer == "noisy" else "weights")


OPTIMIZERS = {
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.5),
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.1, nesterov=True),
}


class _OptimizerNet(ConvNet):
    def __init__(self, optimizer: str) -> None:
        super().__init__()
        self.optimizer = optimizer

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return OPTIMIZERS[self.optimizer](self.parameters())


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_weights_masked_after_each_step_train_the_survivors_as_masked_gradients_do(tmp_path, data, optimizer):
    """Issue 31: the weights re-masked after every step, gradients left as computed, give bit for bit the
    weights of the rule restated here (OpenLTH's for the weights; ours before: gradients zeroed before the step)."""
    torch.manual_seed(9)
    model = _OptimizerNet(optimizer)
    cb = LotteryTicketCallback(amount=0.6, verbose=False)
    _fit(model, cb, tmp_path, data)
    masks, snapshot = cb.masks, cb.snapshot
    assert snapshot is not None
    pruned_grads: list[int] = []

    class GradProbe(pl.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            params = dict(pl_module.named_parameters())
            pruned_grads.append(sum(int((params[n].grad[~m] != 0).sum()) for n, m in masks.items()))

    trainer = lean_trainer(tmp_path, callbacks=[cb, GradProbe()], max_epochs=2)
    trainer.fit(model, loader(data), loader(data))  # in order: the reference below reads the same batches
    assert cb.enforcement == "weights" and len(pruned_grads) == 12 and min(pruned_grads) > 0

    reference = _OptimizerNet(optimizer)
    reference.load_state_dict(snapshot)
    params = dict(reference.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask)
    opt = OPTIMIZERS[optimizer](reference.parameters())
    reference.train()
    for _ in range(2):
        for i, batch in enumerate(loader(data)):
            opt.zero_grad(set_to_none=True)
            reference.training_step(batch, i).backward()
            for name, mask in masks.items():
                params[name].grad.mul_(mask)
            opt.step()
    got = model.state_dict()
    different = [k for k, v in reference.state_dict().items() if not torch.equal(v, got[k])]
    assert not different


class _ClipsItself(ConvNet):
    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        self.clip_gradients(optimizer, gradient_clip_val=0.05, gradient_clip_algorithm="norm")


class _ClipsWhenAsked(ConvNet):
    clips_gradients_only_when_asked = True

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)


ENFORCEMENT = {  # module, Trainer settings, expected, what the first fit says
    "adam": (ConvNet, {}, "weights", "through the weights: Adam is element-wise and gradients are not clipped"),
    "clip-norm": (ConvNet, {"gradient_clip_val": 0.5}, "gradients", "clipping (gradient_clip_val=0.5, by norm)"),
    "clip-value": (
        ConvNet,
        {"gradient_clip_val": 0.1, "gradient_clip_algorithm": "value"},
        "gradients",
        "(gradient_clip_val=0.1, by value) reads every gradient",
    ),
    "own-clipping": (_ClipsItself, {}, "gradients", "_ClipsItself.configure_gradient_clipping (it may clip"),
    "clips-when-asked": (_ClipsWhenAsked, {}, "weights", "Adam is element-wise"),
}


@pytest.mark.parametrize("case", sorted(ENFORCEMENT))
def test_the_first_fit_says_how_masks_are_enforced_and_why(tmp_path, data, case):
    from conftest import lightning_messages

    module, settings, expected, said = ENFORCEMENT[case]
    torch.manual_seed(0)
    model = module()
    cb = LotteryTicketCallback(amount=0.5)
    with lightning_messages() as messages:
        _fit(model, cb, tmp_path, data, **settings)
    lines = [m for m in messages if "keeps pruned weights at zero" in m]
    assert len(lines) == 1 and said in lines[0] and f"through the {expected}:" in lines[0]
    with lightning_messages() as messages:
        _fit(model, cb, tmp_path, data, **settings)  # round 1 masks as said, and says it no more
    assert cb.enforcement == expected and not [m for m in messages if "keeps pruned weights at zero" in m]
    params = dict(model.named_parameters())
    assert all(bool((params[n][~m] == 0).all()) for n, m in cb.round_masks.items())


class _Wide(pl.LightningModule):
    """1.2M masked weights, above the size where masks are kept at one byte per weight."""

    def __init__(self, optimizer: str, manual: bool) -> None:
        super().__init__()
        self.fc1, self.head = nn.Linear(1200, 1000), nn.Linear(1000, 4)
        self.optimizer, self.automatic_optimization = optimizer, not manual

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        x, y = batch
        loss = nn.functional.cross_entropy(self.head(torch.relu(self.fc1(x))), y)
        if self.automatic_optimization:
            return loss
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        return None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer == "noisy":
            return _NoisySGD(self.parameters(), lr=0.01, momentum=0.9)
        return torch.optim.Adam(self.parameters(), lr=0.01)


@pytest.mark.parametrize(("optimizer", "manual"), [("adam", False), ("noisy", False), ("adam", True)])
def test_a_large_module_keeps_pruned_weights_zero_with_one_byte_masks(tmp_path, optimizer, manual):
    g = torch.Generator().manual_seed(9)
    data = TensorDataset(torch.randn(48, 1200, generator=g), torch.randint(0, 4, (48,), generator=g))
    model = _Wide(optimizer, manual)
    cb = LotteryTicketCallback(amount=0.5, verbose=False)
    lean_trainer(tmp_path, callbacks=[cb]).fit(model, DataLoader(data, batch_size=16))
    masks = cb.masks
    assert sum(m.numel() for m in masks.values()) > 2**20
    violations: list[int] = []

    class EveryStep(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            params = dict(pl_module.named_parameters())
            violations.extend(int((params[n][~m] != 0).sum()) for n, m in masks.items())

    trainer = lean_trainer(tmp_path, callbacks=[cb, EveryStep()])
    trainer.fit(model, DataLoader(data, batch_size=16))
    assert len(violations) == 3 * len(masks) and sum(violations) == 0
    alive = dict(model.named_parameters())["fc1.weight"][masks["fc1.weight"]]
    assert int((alive != 0).sum()) == int(masks["fc1.weight"].sum())  # the surviving weights did train


class _WideLinear(pl.LightningModule):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc, self.head = nn.Linear(16, width), nn.Linear(width, 4)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.head(torch.relu(self.fc(x.flatten(1)[:, :16]))), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.01)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("width", [8, 70_000])  # masks in the weights' dtype; one byte per weight (> 2**20)
def test_pruned_rounds_on_a_gpu_end_with_pruned_weights_zero(tmp_path, data, width):
    """Lightning moves the module back to the CPU before on_fit_end: the round's last re-masking follows it."""
    torch.manual_seed(0)
    model = _WideLinear(width)
    cb = LotteryTicketCallback(amount=0.5, verbose=False)
    for _ in range(3):
        lean_trainer(tmp_path, callbacks=[cb], accelerator="cuda", max_epochs=1).fit(model, loader(data))
    assert cb.round == 2 and cb.enforcement == "weights"
    params = dict(model.named_parameters())
    assert all(bool((params[n][~m.to(params[n].device)] == 0).all()) for n, m in cb.round_masks.items())
