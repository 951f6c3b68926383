"""What the identity sees of a module beyond its config: its optimizers and schedulers, its initial weights, and
whether it declares its constructor's arguments at all.

A run started from Python knows a module by the hyperparameters it saves; one that saves none
(``save_hyperparameters`` never called) would otherwise share an experiment with every variant
of itself. These observations close most of that gap, and say what they cannot see.
"""

from __future__ import annotations

import hashlib
import inspect
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import yaml
from torch import nn

from lth_lightning.experiment.record.identity import experiment_identity, plain

__all__ = ["identity_of", "optimization_identity", "state_digest", "warn_undeclared_arguments", "weights_digest"]


def warn_undeclared_arguments(obj: object) -> None:
    """Say (once per class and place, as warnings are) when ``obj`` saves none of its constructor's arguments.

    The identity of a Python run knows a module by its saved hyperparameters; one that never calls
    ``save_hyperparameters()`` is known by its architecture, optimizer settings and initial weights only.
    """
    if dict(getattr(obj, "hparams", {}) or {}):
        return
    skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    try:
        parameters = inspect.signature(type(obj).__init__).parameters.values()
    except (TypeError, ValueError):
        return
    names = [p.name for p in parameters if p.name != "self" and p.kind not in skip]
    if names:
        warnings.warn(
            f"{type(obj).__name__} does not save its constructor arguments ({', '.join(names)}): the experiment's "
            "identity sees its architecture, optimizer settings and initial weights, but not those arguments "
            "themselves. Call self.save_hyperparameters() in its __init__ (ignore=[...] for arguments that are "
            "modules) so that every argument names the experiment.",
            UserWarning,
            stacklevel=3,
        )


def _optimizers_and_schedulers(conf: Any) -> tuple[list[Any], list[dict[str, Any]]]:
    """What ``configure_optimizers`` returned, in any of Lightning's forms, as optimizers and scheduler configs."""
    if conf is None:
        return [], []
    if isinstance(conf, torch.optim.Optimizer):
        return [conf], []
    if isinstance(conf, Mapping):
        scheduler = conf.get("lr_scheduler")
        return [conf["optimizer"]], [] if scheduler is None else [_scheduler_config(scheduler)]
    items = list(conf)
    if len(items) == 2 and all(isinstance(x, (list, tuple)) for x in items):
        return list(items[0]), [_scheduler_config(x) for x in items[1]]
    optimizers: list[Any] = []
    schedulers: list[dict[str, Any]] = []
    for item in items:
        found = _optimizers_and_schedulers(item)
        optimizers += found[0]
        schedulers += found[1]
    return optimizers, schedulers


def _scheduler_config(scheduler: Any) -> dict[str, Any]:
    """A scheduler with Lightning's defaults (``interval`` epoch, ``frequency`` 1) where its config leaves them out."""
    config = dict(scheduler) if isinstance(scheduler, Mapping) else {"scheduler": scheduler}
    return {"interval": "epoch", "frequency": 1, **config}


# A scheduler's running state, not its settings.
_SCHEDULER_STATE = frozenset({"last_epoch", "base_lrs", "best", "num_bad_epochs", "cooldown_counter", "mode_worse"})


def _entries(prefix: str, obj: Any, settings: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    yield f"{prefix}.class_path", f"{type(obj).__module__}.{type(obj).__qualname__}"
    for key, value in sorted(settings.items()):
        yield f"{prefix}.{key}", plain(value)


def _describe_optimizer(prefix: str, optimizer: Any) -> Iterator[tuple[str, Any]]:
    defaults = dict(getattr(optimizer, "defaults", {}))
    yield from _entries(prefix, optimizer, defaults)
    groups = list(getattr(optimizer, "param_groups", []))
    for i, group in enumerate(groups):
        for key, value in sorted(group.items()):
            if key not in ("params", "initial_lr") and (key not in defaults or plain(value) != plain(defaults[key])):
                yield f"{prefix}.param_groups.{i}.{key}", plain(value)
        if len(groups) > 1:
            yield f"{prefix}.param_groups.{i}.numel", sum(p.numel() for p in group["params"])


def _describe_scheduler(prefix: str, config: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    scheduler = config["scheduler"]
    state = scheduler.state_dict() if hasattr(scheduler, "state_dict") else {}
    settings = {k: v for k, v in state.items() if not k.startswith("_") and k not in _SCHEDULER_STATE}
    settings.update({k: config[k] for k in ("interval", "frequency", "monitor") if k in config})
    yield from _entries(prefix, scheduler, settings)


def optimization_identity(model: nn.Module) -> dict[str, Any]:
    """The optimizers' and LR schedulers' settings as the module's ``configure_optimizers`` builds them.

    Keys are ``optimizer.<setting>`` (``optimizer.<i>.<setting>`` for several), a parameter
    group's own settings as ``optimizer.param_groups.<g>.<setting>``, and ``lr_scheduler.*`` the
    same way, with Lightning's ``interval``, ``frequency`` and ``monitor``. A ``configure_optimizers``
    that needs a Trainer (``self.trainer.estimated_stepping_batches``) cannot run before training:
    that is said, and the identity records it as unreadable.
    """
    configure = getattr(model, "configure_optimizers", None)
    if configure is None:
        return {}
    try:
        optimizers, schedulers = _optimizers_and_schedulers(configure())
    except Exception as err:
        warnings.warn(
            f"{type(model).__name__}.configure_optimizers() could not run before training ({type(err).__name__}: "
            f"{err}): the experiment's identity does not see its optimizer settings.",
            UserWarning,
            stacklevel=2,
        )
        return {"optimizer": "unreadable before training"}
    out: dict[str, Any] = {}
    for kind, items, describe in (
        ("optimizer", optimizers, _describe_optimizer),
        ("lr_scheduler", schedulers, _describe_scheduler),
    ):
        for i, item in enumerate(items):
            out.update(describe(kind if len(items) == 1 else f"{kind}.{i}", item))
    return dict(yaml.safe_load(yaml.safe_dump(out)) or {})


def weights_digest(module: nn.Module) -> str:
    """16 hex digits of SHA-256 over the module's state (:func:`state_digest`): what ``run.yaml`` records."""
    return state_digest(module.state_dict())


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """16 hex digits of SHA-256 over a state dict (names, dtypes, shapes and bytes, in name order)."""
    sha = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        data = tensor.detach().cpu().contiguous().reshape(-1)
        sha.update(f"{name}:{data.dtype}:{tuple(tensor.shape)};".encode())
        sha.update(data.view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()[:16]


def identity_of(config: Mapping[str, Any], model: nn.Module) -> dict[str, Any]:
    """An experiment's identity: its config's (:func:`~.identity.experiment_identity`), and the optimizers and
    schedulers ``model``'s ``configure_optimizers`` builds."""
    return {**experiment_identity(config), **optimization_identity(model)}
