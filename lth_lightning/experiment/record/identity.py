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
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from lth_lightning.callbacks.settings import CALLBACK_OPTIONS
from lth_lightning.experiment.controls.registry import CONTROLS
from lth_lightning.experiment.record.paths import RunPaths
from lth_lightning.experiment.spec import EXPERIMENT_OPTIONS

__all__ = [
    "LATER_DEFAULTS",
    "PROTOCOLS_KEY",
    "REWIND_PROTOCOL_KEY",
    "NOT_IDENTITY",
    "SEED_KEYS",
    "check_same",
    "check_same_experiment",
    "describe_differences",
    "experiment_folder",
    "digest",
    "experiment_identity",
    "flatten",
    "folder_name",
    "hparams",
    "load_config",
    "plain",
    "python_config",
]

# Keys (glob patterns over flattened config keys) that do not change a round's results: the experiment's and the
# callback's options declared so (:mod:`lth_lightning.options`), and those of the rest of the config.
NOT_IDENTITY: tuple[str, ...] = (
    "config",
    "ckpt_path",
    "weights_only",
    *(f"lottery.{o.name}" for o in EXPERIMENT_OPTIONS if not o.identity),
    *(f"lottery.{o.name}" for o in CALLBACK_OPTIONS if not o.identity),
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
# Settings added after experiments were recorded (glob pattern -> the value that behaves as before): at that
# value a setting is left out of the identity, so that a folder recorded before it keeps its name and results.
LATER_DEFAULTS: dict[str, Any] = {
    **{f"lottery.{o.name}": o.before for o in (*CALLBACK_OPTIONS, *EXPERIMENT_OPTIONS) if o.added_later},
    "model.*lr_schedule": "constant",
    "model.*.init": "default",
}
# A control whose protocol changed (``Control.protocol`` > 1, :mod:`lth_lightning.experiment.controls.control`) adds
# ``lottery.control_protocols`` to the identity of the experiments that run it: a folder recorded with its earlier
# protocol is never read back as this one.
PROTOCOLS_KEY = "lottery.control_protocols"
# Late rewinding (``rewind_step`` > 0) trains steps k..T as OpenLTH does since protocol 2 (T fresh steps before): named
# in the identity of the experiments that use it, so that a folder recorded before is never read back as this one.
REWIND_PROTOCOL_KEY = "lottery.rewind_protocol"
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


def experiment_identity(config: Mapping[str, Any], *, seed: bool = False) -> dict[str, Any]:
    """The flattened settings of ``config`` that change results; the seed too when ``seed``.

    :func:`~.module_identity.identity_of` adds what the module's ``configure_optimizers`` builds.
    """
    patterns = NOT_IDENTITY if seed else (*NOT_IDENTITY, *SEED_KEYS)
    flat = flatten(yaml.safe_load(yaml.safe_dump(plain(dict(config)))) or {})
    identity = {k: v for k, v in sorted(flat.items()) if not _excluded(k, patterns) and not _as_before(k, v)}
    controls = flat.get("lottery.controls") or []
    protocols = {c: CONTROLS[c].protocol for c in controls if c in CONTROLS and CONTROLS[c].protocol > 1}
    if protocols:
        identity[PROTOCOLS_KEY] = protocols
    if isinstance(flat.get("lottery.rewind_step"), int) and flat["lottery.rewind_step"] > 0:
        identity[REWIND_PROTOCOL_KEY] = 2
    return identity


def _as_before(key: str, value: Any) -> bool:
    """Whether ``key`` is a later setting at the value that behaves as before it existed (an empty list as None)."""
    value = None if value == [] else value
    return any(fnmatch.fnmatchcase(key, p) and value == v for p, v in LATER_DEFAULTS.items())


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


def _is_torch_container(class_path: Any) -> bool:
    """A class of torch itself (``torch.nn.Sequential``, ``ModuleList``, ...): a container, not the user's network."""
    return str(class_path).startswith("torch.")


def folder_name(config: Mapping[str, Any], identity: Mapping[str, Any] | None = None) -> str:
    """``<network>-<data>-<scope><amount>-<hash>``: readable, and distinct for distinct experiments.

    The network is the wrapped one (``model.init_args.net``, or a Python module's ``net``) unless that is one of
    torch's own classes (an ``nn.Sequential``): then the module class the user wrote. The hash is of ``identity``
    (by default the config's :func:`experiment_identity`).
    """
    flat = flatten(config)
    inner = flat.get("model.init_args.net.class_path") or flat.get("model.network")
    net = _last(flat.get("model.class_path") if inner is None or _is_torch_container(inner) else inner) or "model"
    data = _last(flat.get("data.class_path")).removesuffix("DataModule") or "data"
    pruning = f"{flat.get('lottery.scope', 'global')}{flat.get('lottery.amount', '')}"
    parts = [re.sub(r"[^A-Za-z0-9.]+", "_", part) for part in (net, data, pruning)]
    return "-".join([*parts, digest(experiment_identity(config) if identity is None else identity)])


def experiment_folder(out: Path, config: Mapping[str, Any], identity: Mapping[str, Any]) -> Path:
    """The experiment's folder in ``out``: :func:`folder_name`'s, or the one folder there already named after the same
    identity's hash under an earlier naming rule (its finished rounds are kept)."""
    name = folder_name(config, identity)
    if (out / name).exists():
        return out / name
    earlier = [p for p in out.glob(f"*-{name.rsplit('-', 1)[-1]}") if p.is_dir()] if out.is_dir() else []
    return earlier[0] if len(earlier) == 1 else out / name


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


# Modules that moved when the package was grouped by concern (new -> old): a class of this package is recorded under
# the module it had when experiments were first recorded, so that a folder started before keeps its name and rounds.
RECORDED_MODULES: dict[str, str] = {
    "lth_lightning.models.mlp": "lth_lightning.mlp",
    "lth_lightning.models.classifier": "lth_lightning.classifier",
    "lth_lightning.data.datamodule": "lth_lightning.datamodule",
    "lth_lightning.data.loader": "lth_lightning.loader",
    "lth_lightning.callbacks.lottery_ticket": "lth_lightning.callback",
    "lth_lightning.callbacks.early_stopping": "lth_lightning.tracker",
    "lth_lightning.export.sparse": "lth_lightning.sparse",
}


def _class_path(obj: object) -> str:
    module = type(obj).__module__
    return f"{RECORDED_MODULES.get(module, module)}.{type(obj).__qualname__}"


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
    :func:`~.module_identity.warn_undeclared_arguments`); the Trainer's settings are kept, with callbacks by their
    ``state_key`` (class and main arguments) and loggers left out.
    """
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
