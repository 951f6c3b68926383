"""The batch that pruning at initialization scores the initial network on, drawn as the references draw it.

SNIP's and GraSP's reference implementations score the cross-entropy of the network's logits on a
class-balanced sample of the training data (10 examples per class by default; GraSP divides the
logits by a temperature of 200 first). :func:`draw_scoring_batch` draws that sample from a run's
training data with the run's seed wherever the data is a classifier's ``(inputs, targets)`` and the
module's ``forward`` returns logits; for any other module it takes the first training batch, whose
scores are then those of the module's own training step. The sample is part of the result: the run
saves it (``seed_<s>/scoring_batch.pt``) exactly as the scores saw it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import default_collate

from lth_lightning.compat import detached_copy
from lth_lightning.pruning.saliency import Loss, class_balanced_indices, cross_entropy_loss

__all__ = ["ScoringBatch", "draw_scoring_batch", "first_training_batch", "training_loss"]


@dataclass(frozen=True)
class ScoringBatch:
    """The batch the scores of pruning at initialization read, and how they read it.

    Attributes:
        batch: The batch, exactly as the scores see it (a classifier's: the tuple ``(inputs, targets)``).
        classes: The number of classes of a class-balanced batch, scored by the cross-entropy of
            ``forward(inputs)``; None for a batch scored by the module's training step.
        per_class: Examples of each class (0 when ``classes`` is None).
    """

    batch: Any
    classes: int | None = None
    per_class: int = 0

    def loss(self, temperature: float = 1.0) -> Loss:
        """The loss the scores differentiate: ``cross_entropy(forward(inputs) / temperature, targets)`` for a
        class-balanced batch (SNIP at temperature 1, GraSP at 200), otherwise the training step's (no temperature).
        """
        if self.classes is None:
            return training_loss(self.batch)
        inputs, targets = self.batch
        return cross_entropy_loss(inputs, targets, temperature)

    def cpu_batch(self) -> Any:
        """The batch with every tensor on the CPU, as the run's folder keeps it."""
        return _to_device(self.batch, torch.device("cpu"))

    def describe(self, seed: int) -> str:
        """One line for the run's report: what the scores of pruning at initialization read."""
        if self.classes is None:
            return (
                "Pruning at initialization scores the training step's loss on the first training batch (the batch "
                "is not a classifier's (inputs, class targets) with logits from forward): not the papers' sample."
            )
        return (
            f"Pruning at initialization scores the cross-entropy of forward(inputs) (GraSP's divided by its "
            f"temperature) on {self.classes * self.per_class} training examples, {self.per_class} of each of "
            f"{self.classes} classes, drawn with seed {seed}, as the reference implementations do."
        )


def draw_scoring_batch(module: nn.Module, datamodule: Any, per_class: int, seed: int) -> ScoringBatch:
    """The scoring batch of a run with ``seed``: ``per_class`` examples of each class, or the first training batch.

    The examples come from the training dataloader's dataset (``loader.dataset``, or the ``examples``
    of :class:`~lth_lightning.data.loader.TensorBatches`; indexed, with ``(input, target)`` items), visited
    in a random order drawn from ``seed`` (:func:`~lth_lightning.pruning.saliency.class_balanced_indices`) and
    collated as the loader collates them.
    The classes are the width of ``forward``'s output for one example. A dataset that is not indexed,
    items that are not ``(tensor, integer label)``, or a ``forward`` that gives no ``(1, classes)``
    logits make it the first training batch instead.

    Raises:
        ValueError: If ``per_class`` is not a positive integer, or a class has fewer examples.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"The number of scoring examples per class must be an integer >= 1, got {per_class!r}.")
    datamodule.prepare_data()
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    dataset = getattr(loader, "examples", None) or getattr(loader, "dataset", None)
    classes = _classes(module, dataset)
    if dataset is None or classes is None:
        return ScoringBatch(next(iter(loader)))
    generator = torch.Generator().manual_seed(seed)
    indices = class_balanced_indices(lambda i: int(dataset[i][1]), len(dataset), classes, per_class, generator)
    collate = getattr(loader, "collate_fn", None) or default_collate
    inputs, targets = collate([dataset[i] for i in indices])
    return ScoringBatch((inputs, targets), classes, per_class)


def _classes(module: nn.Module, dataset: Any) -> int | None:
    """The width of ``module``'s logits for the dataset's first example, if it is a classifier's; else None."""
    if dataset is None or not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__") or not len(dataset):
        return None
    item = dataset[0]
    if not isinstance(item, (tuple, list)) or len(item) != 2 or not isinstance(item[0], Tensor):
        return None
    label = item[1]
    if isinstance(label, Tensor):
        if label.numel() != 1 or label.is_floating_point() or label.is_complex():
            return None
    elif isinstance(label, bool) or not isinstance(label, int):
        return None
    probe = detached_copy(module).eval()
    device = next((p.device for p in probe.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad():
            logits = probe(item[0].unsqueeze(0).to(device))
    except Exception:  # a forward that does not take one example: not a classifier's forward
        return None
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != 1 or not logits.is_floating_point():
        return None
    return int(logits.shape[1]) if logits.shape[1] >= 2 else None


def training_loss(batch: Any) -> Loss:
    """The loss a LightningModule's ``training_step`` returns on ``batch`` (outside any Trainer).

    The closure moves the batch to the module's device and silences the ``self.log`` warnings a
    ``training_step`` gives without a Trainer.

    Raises:
        ValueError: When called on a module with manual optimization, or whose ``training_step`` returns no loss.
    """

    def loss(module: nn.Module) -> Tensor:
        if not getattr(module, "automatic_optimization", True):
            raise ValueError(
                f"{type(module).__name__} optimizes manually: its training_step steps optimizers and returns no "
                "loss to score the initial network with."
            )
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
        moved = _to_device(batch, device)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*self.log.*")
            out = module.training_step(moved, 0)  # type: ignore[operator]
        value = out.get("loss") if isinstance(out, Mapping) else out
        if not isinstance(value, Tensor):
            raise ValueError(
                f"{type(module).__name__}.training_step returned {type(out).__name__}, not a loss tensor "
                "(or a dict with 'loss') to score the initial network with."
            )
        return value

    return loss


def first_training_batch(datamodule: Any) -> Any:
    """The first batch of a LightningDataModule's training data, read outside any fit (prepared and set up first)."""
    datamodule.prepare_data()
    datamodule.setup("fit")
    return next(iter(datamodule.train_dataloader()))


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch
