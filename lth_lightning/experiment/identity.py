"""What defines an experiment: the settings that change its results, their digest and the folder's name.

An experiment's identity is its full configuration less the keys that cannot change a round's
results (where the data lives, progress bars, logging, how many rounds: raising ``rounds``
continues an experiment). Its seeds are the experiment's runs, so the seed is left out of the
experiment's identity too. Two configurations with the same identity are the same experiment and
share a folder; any other difference gives another folder (OpenLTH names run folders by a hash
of their hyperparameters for the same reason).
"""

from __future__ import annotations

import fnmatch
import hashlib
import inspect
import json
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from lth_lightning.experiment.paths import RunPaths

__all__ = [
    "NOT_IDENTITY",
    "SEED_KEYS",
    "check_same",
    "check_same_experiment",
    "describe_differences",
    "digest",
    "experiment_identity",
    "flatten",
    "folder_name",
    "hparams",
    "load_config",
    "optimization_identity",
    "plain",
    "python_config",
    "warn_undeclared_arguments",
    "weights_digest",
]

# Keys (glob patterns over flattened config keys) that do not change a round's results.
NOT_IDENTITY: tuple[str, ...] = (
    "config",
    "ckpt_path",
    "weights_only",
    "lottery.rounds",
    "lottery.seeds",
    "lottery.name",
    "lottery.out_dir",
    "lottery.progress",
    "lottery.stack",
    "lottery.snapshot_device",
    "lottery.keep_checkpoints",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.logger",
    "trainer.log_every_n_steps",
    "trainer.default_root_dir",
    "trainer.accelerator",
    "trainer.profiler",
    "data.*data_dir",
    "data.*download",
    "data.*mirrors",
    "data.*num_workers",
    "data.*pin_memory",
    "data.*persistent_workers",
)
# The seed of a run: `lth fit --seed_everything`, `run_lottery(seed=...)`.
SEED_KEYS: tuple[str, ...] = ("seed_everything", "lottery.seed")


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def plain(value: Any) -> Any:
    """``value`` as YAML-safe data that is the same from run to run (no memory addresses)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    text = repr(value)
    return f"{type(value).__module__}.{type(value).__qualname__}" if " at 0x" in text else text


def _excluded(key: str, patterns: Sequence[str]) -> bool:
    return any(key == p or fnmatch.fnmatchcase(key, p) for p in patterns)


def experiment_identity(
    config: Mapping[str, Any], *, seed: bool = False, model: nn.Module | None = None
) -> dict[str, Any]:
    """The flattened settings of ``config`` that change results; the seed too when ``seed``; with ``model``, the
    optimizers and schedulers its ``configure_optimizers`` builds (:func:`optimization_identity`)."""
    patterns = NOT_IDENTITY if seed else (*NOT_IDENTITY, *SEED_KEYS)
    flat = flatten(yaml.safe_load(yaml.safe_dump(plain(dict(config)))) or {})
    identity = {k: v for k, v in sorted(flat.items()) if not _excluded(k, patterns)}
    return identity if model is None else {**identity, **optimization_identity(model)}


def hparams(config: Mapping[str, Any], *, seed: bool = False) -> dict[str, Any]:
    """The identity's short scalar settings (numbers, strings, booleans), as TensorBoard's HParams shows them."""
    identity = experiment_identity(config, seed=seed)
    return {k: v for k, v in identity.items() if isinstance(v, (bool, int, float, str)) and len(str(v)) < 200}


def load_config(run: RunPaths) -> dict[str, Any]:
    """A run's ``config.yaml`` (empty when it has none)."""
    return dict(yaml.safe_load(run.config.read_text()) or {}) if run.config.is_file() else {}


def _canonical(value: Any) -> Any:
    """Numbers as floats (``100`` and ``100.0`` are equal, and must hash alike), containers recursively."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return str(value)


def digest(identity: Mapping[str, Any]) -> str:
    """A short, stable hash of an identity: 8 hex digits of SHA-256 over its canonical JSON.

    Identities that compare equal hash alike (numbers are compared as numbers: ``100 == 100.0``).
    """
    text = json.dumps(_canonical(dict(identity)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _last(class_path: Any) -> str:
    return str(class_path).rsplit(".", 1)[-1] if class_path else ""


def folder_name(config: Mapping[str, Any], identity: Mapping[str, Any] | None = None) -> str:
    """``<network>-<data>-<scope><amount>-<hash>``: readable, and distinct for distinct experiments.

    The hash is of ``identity`` (by default the config's :func:`experiment_identity`).
    """
    flat = flatten(config)
    net = _last(flat.get("model.init_args.net.class_path") or flat.get("model.network") or flat.get("model.class_path"))
    net = net or "model"
    data = _last(flat.get("data.class_path")).removesuffix("DataModule") or "data"
    pruning = f"{flat.get('lottery.scope', 'global')}{flat.get('lottery.amount', '')}"
    parts = [re.sub(r"[^A-Za-z0-9.]+", "_", part) for part in (net, data, pruning)]
    return "-".join([*parts, digest(experiment_identity(config) if identity is None else identity)])


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_MISSING = object()


def describe_differences(saved: Mapping[str, Any], current: Mapping[str, Any], limit: int = 10) -> str:
    """``key: folder has X, now Y; ...`` for the keys whose values differ (empty when none do).

    A key that one side lacks differs, even from ``None``: exactly when the two digests differ.
    """

    def value(side: Mapping[str, Any], key: str) -> str:
        return "(no such key)" if key not in side else _short(side[key])

    differing = sorted(k for k in set(saved) | set(current) if saved.get(k, _MISSING) != current.get(k, _MISSING))
    details = "; ".join(f"{k}: folder has {value(saved, k)}, now {value(current, k)}" for k in differing[:limit])
    more = f" (and {len(differing) - limit} more)" if len(differing) > limit else ""
    return details + more


def check_same(identity_file: Path, identity: Mapping[str, Any], kind: str, holds: str, advice: str) -> None:
    """Refuse a folder whose recorded identity (``identity_file``) differs from ``identity``, naming what differs.

    Raises:
        ValueError: ``The <kind> folder <folder> holds <holds>: it differs in <keys>. <advice>``.
    """
    if not identity_file.is_file():
        return
    saved = yaml.safe_load(identity_file.read_text()) or {}
    differences = describe_differences(saved, identity)
    if differences:
        raise ValueError(
            f"The {kind} folder {identity_file.parent} holds {holds}: it differs in {differences}. {advice}"
        )


def check_same_experiment(identity_file: Path, identity: Mapping[str, Any]) -> None:
    """Refuse to use a folder that holds another experiment, naming what differs.

    Raises:
        ValueError: If ``identity_file`` exists and records another identity.
    """
    check_same(
        identity_file,
        identity,
        "experiment",
        "another experiment",
        "Leave out --lottery.name (run_lottery(name=None)) to give every experiment its own folder, "
        "or delete the folder to start over.",
    )


def _class_path(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def python_config(
    model: nn.Module,
    datamodule: object,
    lottery: Mapping[str, Any],
    trainer: Mapping[str, Any],
) -> dict[str, Any]:
    """The config of an experiment started from Python: what ``lth fit`` would have in its config.

    The module's and datamodule's saved hyperparameters (``save_hyperparameters``) and the
    module's architecture (its ``repr``: every layer with its sizes) stand for their
    constructor arguments (a module or datamodule that saves none is said once:
    :func:`warn_undeclared_arguments`); the Trainer's settings are kept, with callbacks by their
    ``state_key`` (class and main arguments) and loggers left out.
    """
    warn_undeclared_arguments(model)
    warn_undeclared_arguments(datamodule)
    trainer_config = {k: plain(v) for k, v in trainer.items() if k not in ("callbacks", "logger")}
    callbacks = trainer.get("callbacks") or []
    callbacks = callbacks if isinstance(callbacks, (list, tuple)) else [callbacks]
    if callbacks:
        trainer_config["callbacks"] = [str(getattr(cb, "state_key", _class_path(cb))) for cb in callbacks]
    described: dict[str, Any] = {
        "class_path": _class_path(model),
        "init_args": plain(dict(getattr(model, "hparams", {}) or {})),
        "architecture": repr(model),
    }
    net = getattr(model, "net", None)
    if isinstance(net, nn.Module):  # a wrapper's network names the folder, as `lth fit`'s model.init_args.net does
        described["network"] = _class_path(net)
    return {
        "model": described,
        "data": {
            "class_path": _class_path(datamodule),
            "init_args": plain(dict(getattr(datamodule, "hparams", {}) or {})),
        },
        "trainer": trainer_config,
        "lottery": plain(dict(lottery)),
    }


# --------------------------------------------------------------------------- what a module does not declare


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
    """16 hex digits of SHA-256 over the module's state (names, dtypes, shapes and bytes, in name order)."""
    sha = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().cpu().contiguous().reshape(-1)
        sha.update(f"{name}:{data.dtype}:{tuple(tensor.shape)};".encode())
        sha.update(data.view(torch.uint8).numpy())
    return sha.hexdigest()[:16]
