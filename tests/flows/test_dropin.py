"""The callback dropped into other people's modules and Trainer habits: nothing may fail silently."""

from __future__ import annotations

import gc
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    ConvNet,
    TinyImageData,
    lean_trainer,
    lightning_messages,
    loader,
    round_trainer,
    saved_accuracy,
    tiny_images,
)
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch import nn
from torch.nn.utils import parametrize

from lth_lightning import MLP, LotteryClassifier, LotteryTicketCallback, run_lottery
from lth_lightning.experiment.record.paths import RunPaths
from lth_lightning.pruning.magnitude import keep_count

# ----------------------------------------------------------------------------- 1. test/validate/predict(ckpt_path)


class PredictingConvNet(ConvNet):
    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self(batch[0])


@pytest.mark.parametrize("stage", ["test", "validate", "predict"])
def test_evaluating_a_checkpoint_between_rounds_does_not_stop_the_experiment(tmp_path, data, stage):
    """Lightning's own idiom, `trainer.test(model, ckpt_path="best")`, restores callback state too."""
    torch.manual_seed(0)
    model = PredictingConvNet()
    cb = LotteryTicketCallback(amount=0.5, verbose=False)
    for r in range(3):
        best = ModelCheckpoint(dirpath=tmp_path / f"round{r}", monitor="val_loss", save_top_k=1)
        trainer = lean_trainer(tmp_path, callbacks=[cb, best], max_epochs=2, enable_checkpointing=True)
        trainer.fit(model, loader(data, shuffle=True), loader(data))
        masks, history = cb.masks, cb.history
        if stage == "predict":
            trainer.predict(model, loader(data), ckpt_path="best")
        else:
            getattr(trainer, stage)(model, loader(data), ckpt_path="best", verbose=False)
        # The mid-round checkpoint's state (phase "training", the masks before pruning) was not taken.
        assert cb.phase == "pruned" and cb.round == r and cb.history == history
        assert all(torch.equal(cb.masks[k], masks[k]) for k in masks)
    assert [h["round"] for h in cb.history] == [0, 1, 2]
    assert cb.history[2]["density"] == pytest.approx(0.25, abs=1e-2)


# ----------------------------------------------------------------------------- 2. tied weights


class TiedLM(pl.LightningModule):
    """nanoGPT-style weight tying: the embedding and the output head are one Parameter."""

    def __init__(self, vocab: int = 16, dim: int = 12) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.body = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.emb.weight = self.head.weight  # registered first under the embedding

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.body(self.emb(tokens))))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        tokens, target = batch
        return F.cross_entropy(self(tokens), target)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.05)


def _tokens(n: int = 64) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 16, (n,), generator=g)
    return loader(torch.utils.data.TensorDataset(tokens, (tokens + 1) % 16))


def test_tied_embedding_and_head_are_pruned_once(tmp_path):
    torch.manual_seed(0)
    model = TiedLM()
    cb = LotteryTicketCallback(amount=0.5, verbose=False)
    for _ in range(2):
        lean_trainer(tmp_path, callbacks=[cb]).fit(model, _tokens())
    assert sorted(cb.masks) == ["body.weight", "emb.weight"]  # the shared matrix, once, by its first name
    total = 16 * 12 + 12 * 12
    assert sum(int(m.sum()) for m in cb.masks.values()) == keep_count(total, 0.5, 2)
    shared = cb.round_masks["emb.weight"]
    assert not bool(shared.all())
    assert torch.all(model.head.weight[~shared] == 0) and model.head.weight is model.emb.weight
    assert set(cb.history[1]["layer_density"]) == {"body.weight", "emb.weight"}


def test_a_tied_parameter_may_be_named_by_any_of_its_names(tmp_path):
    model = TiedLM()
    cb = LotteryTicketCallback(amount=0.5, parameters=["head.weight"], rates={"head.weight": 0.25}, verbose=False)
    lean_trainer(tmp_path, callbacks=[cb]).fit(model, _tokens())
    assert list(cb.masks) == ["emb.weight"]
    assert int(cb.masks["emb.weight"].sum()) == keep_count(16 * 12, 0.25, 1)


# ----------------------------------------------------------------------------- 3. parametrized weights


class Normed(pl.LightningModule):
    """A user's module whose first layer is re-parametrized (weight norm, spectral norm, or their own)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        fc1 = nn.Linear(64, 24)
        if kind == "weight_norm":
            fc1 = nn.utils.parametrizations.weight_norm(fc1)
        elif kind == "spectral_norm":
            fc1 = nn.utils.parametrizations.spectral_norm(fc1)
        elif kind == "old_weight_norm":
            with pytest.warns(FutureWarning):
                fc1 = nn.utils.weight_norm(fc1)
        elif kind == "symmetric":
            fc1 = nn.Linear(24, 24)
            parametrize.register_parametrization(fc1, "weight", Symmetric())
        self.flatten = nn.Flatten()
        self.fc0 = nn.Linear(64, 24) if kind == "symmetric" else nn.Identity()
        self.fc1 = fc1
        self.head = nn.Linear(24, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.fc1(self.fc0(self.flatten(x)))))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return F.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.02)


class Symmetric(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.triu() + x.triu(1).transpose(-1, -2)


@pytest.mark.parametrize(
    ("kind", "target"),
    [
        ("weight_norm", "fc1.parametrizations.weight.original1"),
        ("spectral_norm", "fc1.parametrizations.weight.original"),
        ("old_weight_norm", "fc1.weight_v"),
    ],
)
def test_parametrized_layers_are_pruned_through_the_tensor_that_zeroes_the_weight(tmp_path, data, kind, target):
    torch.manual_seed(0)
    model = Normed(kind)
    cb = LotteryTicketCallback(amount=0.5, verbose=False)
    for _ in range(2):
        lean_trainer(tmp_path, callbacks=[cb], max_epochs=2).fit(model, loader(data, shuffle=True))
    assert sorted(cb.masks) == sorted([target, "head.weight"])
    mask = cb.round_masks[target]
    assert mask.shape == (24, 64) and 0 < mask.float().mean() < 1
    with torch.no_grad():
        model.fc1.eval()
        effective = model.fc1(torch.eye(64)).T - model.fc1.bias[:, None]  # the weight the layer computes with
    assert torch.all(effective[~mask].abs() < 1e-6) and bool((effective[mask] != 0).all())
    assert cb.history[0]["layer_density"].keys() == {target, "head.weight"}


def test_parametrized_layers_are_ranked_by_the_weight_they_compute(tmp_path, data):
    """Global magnitude pruning compares the effective weights, not the raw direction of weight norm."""
    torch.manual_seed(1)
    model = Normed("weight_norm")
    with torch.no_grad():
        model.fc1.parametrizations.weight.original0.mul_(50.0)  # large effective weights, same direction
    cb = LotteryTicketCallback(amount=0.5, verbose=False)
    lean_trainer(tmp_path, callbacks=[cb], max_epochs=1).fit(model, loader(data))
    # Half of the 1,536 + 96 weights go; the head's are the smallest effective weights, so all of them go first.
    # Ranked by the direction alone (magnitudes like the head's), the head would keep about half.
    assert int(cb.masks["head.weight"].sum()) == 0
    assert int(cb.masks["fc1.parametrizations.weight.original1"].sum()) == keep_count(1536 + 96, 0.5, 1)


def test_an_unknown_parametrization_is_refused_not_skipped(tmp_path, data):
    model = Normed("symmetric")
    cb = LotteryTicketCallback(verbose=False)
    with pytest.raises(
        ValueError,
        match=r"fc1.weight is computed by the parametrization Symmetric from fc1.parametrizations.weight.original.*"
        r"parameters=\[.*'fc1.parametrizations.weight.original'",
    ):
        lean_trainer(tmp_path, callbacks=[cb]).fit(model, loader(data))
    # Named explicitly, the underlying tensor is pruned by its own magnitude.
    explicit = LotteryTicketCallback(parameters=["fc0.weight", "fc1.parametrizations.weight.original"], verbose=False)
    lean_trainer(tmp_path, callbacks=[explicit]).fit(model, loader(data))
    assert sorted(explicit.masks) == ["fc0.weight", "fc1.parametrizations.weight.original"]


# ----------------------------------------------------------------------------- 4. manual optimization


class NoisySGD(torch.optim.SGD):
    """Not element-wise: moves every weight after each step, pruned or not."""

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def]
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(0.01)
        return loss


class ManualGAN(pl.LightningModule):
    """Two networks, two optimizers, three optimizer steps per batch, as GAN training steps go."""

    def __init__(self, raw: bool, noisy: bool) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.raw, self.noisy = raw, noisy
        self.gen = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
        self.disc = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.disc(self.gen(x))

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        opt_gen, opt_disc = self.optimizers(use_pl_optimizer=not self.raw)
        for opt in (opt_disc, opt_gen, opt_disc):
            loss = F.cross_entropy(self(x), y)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        kind = NoisySGD if self.noisy else torch.optim.Adam
        return [kind(self.gen.parameters(), lr=0.01), kind(self.disc.parameters(), lr=0.01)]


class EveryForward(pl.Callback):
    """Counts pruned weights that are non-zero at the start of every forward pass and every batch of the round.

    A compiled module does not call forward hooks registered after it was compiled: there the
    checks at the start of every training and validation batch remain.
    """

    def __init__(self, lottery: LotteryTicketCallback) -> None:
        self.lottery, self.forwards, self.batches, self.violations = lottery, 0, 0, 0

    def _check(self) -> None:
        self.violations += sum(int((self.params[n][~m] != 0).sum()) for n, m in self.masks.items())

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.masks = self.lottery.round_masks
        self.params = dict(pl_module.named_parameters())

        def check(module: nn.Module, args: Any) -> None:
            self.forwards += 1
            self._check()

        self.handle = pl_module.register_forward_pre_hook(check)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.batches += 1
        self._check()

    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if hasattr(self, "params"):
            self.batches += 1
            self._check()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.handle.remove()


@pytest.mark.parametrize(("raw", "noisy"), [(True, False), (False, True), (True, True)])
def test_manual_optimization_keeps_pruned_weights_zero_at_every_forward(tmp_path, data, raw, noisy):
    torch.manual_seed(0)
    model = ManualGAN(raw=raw, noisy=noisy)
    cb = LotteryTicketCallback(amount=0.5, verbose=False)
    lean_trainer(tmp_path, callbacks=[cb]).fit(model, loader(data, shuffle=True))
    probe = EveryForward(cb)
    lean_trainer(tmp_path, callbacks=[cb, probe], max_epochs=2).fit(model, loader(data, shuffle=True))
    assert probe.forwards == 2 * 6 * 3 and probe.violations == 0
    params = dict(model.named_parameters())
    moved = sum(int((params[n][m] != cb.snapshot[n][m]).sum()) for n, m in cb.round_masks.items())
    assert moved > 0  # it trained


# ----------------------------------------------------------------------------- 5. metric names of the user's module


class UnderscoreNet(ConvNet):
    """Logs `val_loss` and `test_acc` (the convention of many projects), not `val/loss` and `test/acc`."""

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_acc", (self(x).argmax(1) == y).float().mean())


def test_run_lottery_names_the_metrics_it_reads_and_refuses_missing_ones(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(
        ValueError, match=r"`monitor` 'val/loss' was never logged in validation\. Logged metrics: val_loss"
    ):
        run_lottery(UnderscoreNet(), TinyImageData(), rounds=2, trainer=round_trainer(), out_dir=tmp_path, name="a")
    assert not (tmp_path / "a").exists()  # refused at the sanity check: nothing was recorded
    with pytest.raises(
        ValueError, match=r"`test_metric` 'test/acc' was never logged in test\. Logged metrics: test_acc"
    ):
        run_lottery(
            UnderscoreNet(), TinyImageData(), rounds=2, trainer=round_trainer(), out_dir=tmp_path, name="b",
            monitor="val_loss",
        )  # fmt: skip
    rows = run_lottery(
        UnderscoreNet(),
        TinyImageData(),
        rounds=2,
        trainer=round_trainer(max_epochs=2),
        out_dir=tmp_path,
        name="c",
        monitor="val_loss",
        test_metric="test_acc",
        controls=["random_reinit"],
        progress=False,
    )
    x, y = tiny_images(96, seed=2).tensors  # TinyImageData's test set
    for row in rows:
        flat = row.flat()
        weights = RunPaths(rows.run_dir).weights(row.round)  # the network the round trained, tested again
        assert flat["test_acc"] == pytest.approx(saved_accuracy(UnderscoreNet(), weights, x, y), abs=1e-6)
        assert flat["val_loss"] > 0 and flat["best_val_loss"] <= flat["val_loss"]
        assert flat["best_val_step"] in (6, 12) and 0 <= flat["test_acc_at_best_val"] <= 1
    assert 0 <= rows[1].flat()["random_reinit_test_acc"] <= 1


# ----------------------------------------------------------------------------- what is pruned, said once


class Mixed(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(32, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.rnn = nn.GRU(8, 8, batch_first=True)
        self.head = nn.Linear(8, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.emb(tokens)
        h, _ = self.attn(h, h, h)
        h, _ = self.rnn(h)
        return self.head(h[:, -1])

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return F.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.01)


def test_the_first_fit_says_what_is_pruned_and_what_the_default_leaves_out(tmp_path):
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 32, (32, 5), generator=g)
    data = loader(torch.utils.data.TensorDataset(tokens, tokens[:, 0] % 4))
    cb = LotteryTicketCallback(amount=0.5)
    with lightning_messages() as messages:
        for _ in range(2):
            lean_trainer(tmp_path, callbacks=[cb]).fit(Mixed(), data)
    summaries = [m for m in messages if "LotteryTicketCallback prunes" in m]
    assert len(summaries) == 1  # once, at the first fit
    text = summaries[0]
    # Every linear map: the attention's packed in-projection too; embeddings and RNN weights stay out.
    assert "attn.in_proj_weight  (24, 8)" in text and "attn.out_proj.weight  (8, 8)" in text
    assert "head.weight  (4, 8)" in text and "LotteryTicketCallback prunes 3 tensors (288 weights)" in text
    assert "emb.weight  (32, 8)  Embedding" in text, text
    assert "rnn.weight_ih_l0  (24, 8)  GRU" in text and "rnn.weight_hh_l0  (24, 8)  GRU" in text
    assert (
        "parameters=['attn.in_proj_weight', 'attn.out_proj.weight', 'head.weight', 'emb.weight', "
        "'rnn.weight_ih_l0', 'rnn.weight_hh_l0']" in text
    )


# ----------------------------------------------------------------------------- strategies that shard parameters


class _RestoresAfterSetup(SingleDeviceStrategy):
    @property
    def restore_checkpoint_after_setup(self) -> bool:
        return True


def test_strategies_that_restore_after_setup_are_refused(tmp_path, data):
    cb = LotteryTicketCallback(verbose=False)
    trainer = lean_trainer(tmp_path, callbacks=[cb], strategy=_RestoresAfterSetup(device=torch.device("cpu")))
    with pytest.raises(RuntimeError, match=r"does not support the _RestoresAfterSetup strategy.*Use a single device"):
        trainer.fit(ConvNet(), loader(tiny_images(32)))


# ----------------------------------------------------------------------------- memory over many rounds


def _live_trainers_and_tensor_bytes() -> tuple[int, int]:
    gc.collect()
    objects = gc.get_objects()
    trainers = sum(issubclass(type(o), pl.Trainer) for o in objects)  # type(): no attribute lookups on proxies
    storages = {}
    for o in objects:
        if issubclass(type(o), torch.Tensor) and not o.is_meta:
            storage = o.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return trainers, sum(storages.values())


def test_thirty_rounds_in_one_process_keep_memory_flat(tmp_path):
    """Lightning issue #8542 (ModelPruning leaking per fit): nothing of a finished round may stay alive."""
    torch.manual_seed(0)
    model = LotteryClassifier(net=MLP((64, 32, 4)), lr=0.01)
    cb = LotteryTicketCallback(amount=0.1, verbose=False)
    train, test = loader(tiny_images(64), shuffle=True), loader(tiny_images(64, seed=2))
    for r in range(30):
        trainer = lean_trainer(tmp_path, callbacks=[cb])
        trainer.fit(model, train)
        trainer.test(model, test, verbose=False)
        if r == 4:
            trainers_at_5, tensor_bytes_at_5 = _live_trainers_and_tensor_bytes()
    trainers, tensor_bytes = _live_trainers_and_tensor_bytes()
    assert cb.round == 29 and cb.density < 0.05
    assert trainers == trainers_at_5  # each round's Trainer is gone with the next one (the module keeps the last)
    # One leaked copy of the network per round would be 25 x 8.7 KB; masks and snapshot are replaced, not kept.
    assert tensor_bytes - tensor_bytes_at_5 < 16 * 1024, (tensor_bytes_at_5, tensor_bytes)


# ----------------------------------------------------------------------------- Trainer habits


class HabitNet(ConvNet):
    """ConvNet with the optimizer and scheduler of the habit under test."""

    def __init__(self, optimizer: str = "adam", scheduler: bool = False) -> None:
        super().__init__(lr=0.01)
        self.optimizer_name, self.scheduler = optimizer, scheduler

    def configure_optimizers(self) -> Any:
        if self.optimizer_name == "lbfgs":
            return torch.optim.LBFGS(self.parameters(), lr=0.1, max_iter=3)
        if self.optimizer_name == "adafactor":
            return torch.optim.Adafactor(self.parameters(), lr=0.01)
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=0.1)
        if not self.scheduler:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 2, gamma=0.5)}


HABITS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "bf16-mixed": ({}, {"precision": "bf16-mixed"}),
    "16-mixed (cuda)": ({}, {"precision": "16-mixed", "accelerator": "cuda"}),  # on a CPU it becomes bf16-mixed
    "bf16-true": ({}, {"precision": "bf16-true"}),
    "accumulate": ({}, {"accumulate_grad_batches": 3}),
    "clip-norm": ({}, {"gradient_clip_val": 0.05}),
    "clip-value": ({}, {"gradient_clip_val": 0.01, "gradient_clip_algorithm": "value"}),
    "scheduler": ({"scheduler": True}, {}),
    "lbfgs": ({"optimizer": "lbfgs"}, {}),
    "adafactor": ({"optimizer": "adafactor"}, {}),
    "swa": ({}, {"callbacks": "swa"}),
    "early-stopping": ({}, {"callbacks": "early_stopping"}),
    "compile": ({}, {"compile": True}),
}


def _habit(name: str) -> Any:
    cuda = HABITS[name][1].get("accelerator") == "cuda"
    marks = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
    return pytest.param(name, marks=marks if cuda else [])


@pytest.mark.parametrize("habit", [_habit(name) for name in HABITS])
def test_trainer_habits_keep_pruned_weights_zero_at_every_forward(tmp_path, data, habit):
    from lightning.pytorch.callbacks import EarlyStopping, StochasticWeightAveraging

    module_kwargs, trainer_kwargs = HABITS[habit]
    trainer_kwargs = {"accelerator": "cpu", **trainer_kwargs}
    compiled = trainer_kwargs.pop("compile", False)
    extra = trainer_kwargs.pop("callbacks", "")
    torch.manual_seed(0)
    model = HabitNet(**module_kwargs)
    fitted = torch.compile(model, backend="aot_eager") if compiled else model
    cb = LotteryTicketCallback(amount=0.5, verbose=False)
    total = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1)

    def fit(*callbacks: pl.Callback) -> None:
        habit: list[pl.Callback] = {  # fresh per fit, as Lightning's stateful callbacks need
            "swa": [StochasticWeightAveraging(swa_lrs=0.01, swa_epoch_start=1)],
            "early_stopping": [EarlyStopping(monitor="val_loss", patience=0)],
        }.get(extra, [])
        trainer = lean_trainer(tmp_path, callbacks=[cb, *callbacks, *habit], max_epochs=3, **trainer_kwargs)
        trainer.fit(fitted, loader(data, shuffle=True), loader(data))

    fit()
    probe = EveryForward(cb)
    fit(probe)
    assert probe.batches > 0 and probe.violations == 0
    assert probe.forwards > 0 or compiled
    assert cb.round == 1 and sum(int(m.sum()) for m in cb.masks.values()) == keep_count(total, 0.5, 2)
    params = dict(model.named_parameters())
    assert any(bool((params[n][m] != cb.snapshot[n][m].to(params[n].dtype)).any()) for n, m in cb.round_masks.items())


def test_a_lazy_module_not_yet_materialized_is_refused(tmp_path, data):
    class Lazy(ConvNet):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.LazyLinear(24)

    cb = LotteryTicketCallback(verbose=False)
    with pytest.raises(ValueError, match=r"Parameter 'fc1.weight' is not materialized yet \(lazy module\)"):
        lean_trainer(tmp_path, callbacks=[cb]).fit(Lazy(), loader(data))
    materialized = Lazy()
    materialized(data.tensors[0][:2])  # a dry run materializes it, as torch's lazy modules ask
    lean_trainer(tmp_path, callbacks=[cb]).fit(materialized, loader(data))
    assert "fc1.weight" in cb.masks
