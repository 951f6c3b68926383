"""Which tensors a lottery ticket prunes: the default rule, explicit names, shared and re-parametrized weights.

Lightning-free: a module in, the tensors to prune out. Tensors are found by identity, so a shared
(tied) parameter is one tensor with several names; its mask is keyed by its first name in
``named_parameters()`` order and any of its names may select it. A layer weight that a
parametrization computes (``weight_norm``, ``spectral_norm``) is pruned through the underlying
tensor whose zeros are zeros of the weight, and ranked by the weight the layer computes; a
parametrization whose zeros cannot be known is refused, never skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from lth_lightning.compat import SPECTRAL_NORM, WEIGHT_NORM, SpectralNormHook, WeightNormHook, forward_pre_hooks
from lth_lightning.pruning.magnitude import Scope, match_names, plan_groups

__all__ = [
    "LIBRARY_LINEAR",
    "PRUNABLE_LAYERS",
    "Selection",
    "Target",
    "magnitudes",
    "plan_rates",
    "resolve_rates",
    "resolve_targets",
    "select_targets",
]

PRUNABLE_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
# Linear maps that libraries define in their own classes, by ``module.QualifiedName`` (matched along a class's MRO,
# so subclasses count), recognised without importing the library. Each entry: its weight parameters.
LIBRARY_LINEAR: dict[str, tuple[str, ...]] = {
    "transformers.pytorch_utils.Conv1D": ("weight",),  # GPT-2, GPT-J's ancestors, ...: a transposed (in, out) weight
}
# torch's packed attention projection: the query, key and value maps in one (3E, E) tensor, or three when
# the key and value widths differ.
_MHA_PROJECTIONS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
Kind = Literal["parameter", "weight_norm", "spectral_norm"]


@dataclass(frozen=True)
class Target:
    """One pruned tensor.

    Attributes:
        name: The key of its mask: the parameter's first name in ``named_parameters()`` order.
        shape: Its shape.
        aliases: Its other names: further names of a shared parameter and, for a re-parametrized
            layer weight, the layer's ``<layer>.weight``.
        kind: ``"parameter"`` (ranked by its own magnitude), or ``"weight_norm"`` /
            ``"spectral_norm"``: the direction (resp. the unnormalized weight) of a layer whose
            weight that parametrization computes, ranked by the computed weight.
        layer: The layer whose weight it computes (re-parametrized kinds only).
    """

    name: str
    shape: tuple[int, ...]
    aliases: tuple[str, ...] = ()
    kind: Kind = "parameter"
    layer: str | None = None

    def describe(self) -> str:
        """``name  (shape)``, the layer weight it computes, and its other names."""
        text = f"{self.name}  {self.shape}"
        others = list(self.aliases)
        if self.layer is not None:
            weight = _join(self.layer, "weight")
            others.remove(weight)
            text += f"  ({weight} under {self.kind})"
        return text + (f"  also: {', '.join(others)}" if others else "")


@dataclass(frozen=True)
class Selection:
    """The tensors chosen for pruning, and the weight matrices the default rule left out.

    Attributes:
        targets: The pruned tensors, in ``named_parameters()`` order.
        left_out: ``(name, shape, owner type)`` of every other parameter of two or more
            dimensions (embeddings, RNN weights), when the default rule chose.
        recognised: ``(class, layers)`` of each library class the default rule recognised as a linear map.
    """

    targets: tuple[Target, ...]
    left_out: tuple[tuple[str, tuple[int, ...], str], ...] = ()
    recognised: tuple[tuple[str, int], ...] = ()

    def describe(self) -> str:
        """What is pruned, what the default rule left out and the ``parameters=`` line that adds it."""
        total = sum(torch.Size(t.shape).numel() for t in self.targets)
        lines = [f"LotteryTicketCallback prunes {len(self.targets)} tensors ({total:,} weights):"]
        lines += [f"  {t.describe()}" for t in self.targets]
        if self.recognised:
            found = ", ".join(f"{cls} ({count} layers)" for cls, count in self.recognised)
            lines.append(f"Linear maps of library classes recognised: {found}.")
        if self.left_out:
            lines.append(f"The default rule prunes {DEFAULT_RULE}; it leaves out these weight tensors:")
            lines += [f"  {name}  {shape}  {owner}" for name, shape, owner in self.left_out]
            names = [t.name for t in self.targets] + [name for name, _, _ in self.left_out]
            lines.append(f"To prune them too: parameters={names!r}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Reparam:
    """A layer weight computed by a parametrization (or an old-style forward pre-hook)."""

    layer: str
    kind: Kind | None  # None: a parametrization whose zeros cannot be known
    tensor: Tensor  # the tensor whose zeros are zeros of the weight (unknown kinds: the first original)
    originals: tuple[str, ...]  # the underlying parameters' names
    description: str


class _Index:
    """Every parameter of a module by identity, with all its names, and its re-parametrized layer weights."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.first: dict[int, str] = {}
        self.names: dict[str, list[str]] = {}
        self.params: dict[str, nn.Parameter] = {}
        for name, param in module.named_parameters(remove_duplicate=False):
            first = self.first.setdefault(id(param), name)
            self.names.setdefault(first, []).append(name)
            self.params.setdefault(first, param)
        self.order = {name: i for i, name in enumerate(self.params)}
        self.modules = dict(module.named_modules())
        self.reparams: dict[str, _Reparam] = {}
        for layer, mod in self.modules.items():
            reparam = _reparametrization(layer, mod)
            if reparam is not None:
                self.reparams[_join(layer, "weight")] = reparam

    def target(self, param: Tensor, reparam: _Reparam | None = None) -> Target:
        if isinstance(param, nn.parameter.UninitializedParameter):
            raise ValueError(
                f"Parameter {self.first[id(param)]!r} is not materialized yet (lazy module); run a forward pass first."
            )
        name = self.first[id(param)]
        aliases = tuple(n for n in self.names[name] if n != name)
        if reparam is None or reparam.kind is None:
            return Target(name, tuple(param.shape), aliases)
        return Target(name, tuple(param.shape), (*aliases, _join(reparam.layer, "weight")), reparam.kind, reparam.layer)

    def known_reparam(self, weight_name: str) -> _Reparam:
        reparam = self.reparams[weight_name]
        if reparam.kind is None:
            raise ValueError(
                f"{weight_name} is computed by the parametrization {reparam.description} from "
                f"{', '.join(reparam.originals)}; LotteryTicketCallback cannot know whether a zero there is a zero "
                "weight, so it does not prune this layer silently. Name the tensor to prune yourself, e.g. "
                f"parameters=[..., {reparam.originals[0]!r}] (it is then ranked by its own magnitude), or leave the "
                "layer out with an explicit `parameters` list."
            )
        return reparam

    def reparam_of(self, param: Tensor) -> _Reparam | None:
        for reparam in self.reparams.values():
            if reparam.kind is not None and reparam.tensor is param:
                return reparam
        return None

    def by_default_rule(self) -> list[Target]:
        targets = []
        for layer, mod in self.modules.items():
            if isinstance(mod, nn.MultiheadAttention):
                packed = [getattr(mod, n) for n in _MHA_PROJECTIONS]
                targets += [self.target(p) for p in packed if isinstance(p, nn.Parameter)]
                continue
            if not isinstance(mod, PRUNABLE_LAYERS) and _library_linear(mod) is None:
                continue
            weight_name = _join(layer, "weight")
            if weight_name in self.reparams:
                reparam = self.known_reparam(weight_name)
                targets.append(self.target(reparam.tensor, reparam))
                continue
            weight = getattr(mod, "weight", None)
            if not isinstance(weight, nn.Parameter):
                raise ValueError(
                    f"{weight_name} of the {type(mod).__name__} is a {type(weight).__name__}, not a Parameter nor a "
                    "weight computed by weight_norm or spectral_norm: LotteryTicketCallback cannot prune it. Pass "
                    "`parameters=[...]` naming the tensors to prune."
                )
            targets.append(self.target(weight))
        return self.ordered(targets)

    def by_patterns(self, patterns: Sequence[str]) -> list[Target]:
        candidates: dict[str, str | None] = {n: first for first, names in self.names.items() for n in names}
        candidates.update({weight_name: None for weight_name in self.reparams})  # layer weights, by the layer's name
        targets = []
        for name in match_names(patterns, list(candidates), "parameters"):
            first = candidates[name]
            if first is None:
                reparam = self.known_reparam(name)
                targets.append(self.target(reparam.tensor, reparam))
            else:
                param = self.params[first]
                targets.append(self.target(param, self.reparam_of(param)))
        return self.ordered(targets)

    def recognised(self) -> list[tuple[str, int]]:
        counts: dict[str, int] = {}
        for mod in self.modules.values():
            cls = _library_linear(mod) if not isinstance(mod, PRUNABLE_LAYERS) else None
            if cls is not None:
                counts[cls] = counts.get(cls, 0) + 1
        return sorted(counts.items())

    def ordered(self, targets: list[Target]) -> list[Target]:
        unique = {t.name: t for t in targets}
        return sorted(unique.values(), key=lambda t: self.order[t.name])

    def left_out(self, targets: Sequence[Target]) -> list[tuple[str, tuple[int, ...], str]]:
        chosen = {t.name for t in targets}
        for t in targets:
            if t.layer is not None:
                chosen.update(self.reparams[_join(t.layer, "weight")].originals)
        out = []
        for name, param in self.params.items():
            if name not in chosen and param.dim() >= 2:
                owner = self.modules.get(name.rpartition(".")[0], self.module)
                out.append((name, tuple(param.shape), type(owner).__name__))
        return out


DEFAULT_RULE = (
    "the weight of every nn.Linear, nn.ConvNd, nn.ConvTransposeNd and library linear map (Hugging Face Conv1D), "
    "and nn.MultiheadAttention's packed projections"
)


def _library_linear(mod: nn.Module) -> str | None:
    """The :data:`LIBRARY_LINEAR` class ``mod`` is (or derives from), by name: the library need not be importable."""
    for cls in type(mod).__mro__:
        name = f"{cls.__module__}.{cls.__qualname__}"
        if name in LIBRARY_LINEAR:
            return name
    return None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _weight_parametrizations(module: nn.Module) -> Any:
    """The ``ParametrizationList`` that computes ``module.weight``."""
    return module.parametrizations["weight"]  # type: ignore[index]


def _reparametrization(layer: str, mod: nn.Module) -> _Reparam | None:
    if parametrize.is_parametrized(mod, "weight"):
        plist = _weight_parametrizations(mod)
        kinds = [type(p) for p in plist]
        originals = [n for n, _ in plist.named_parameters() if n.startswith("original")]
        names = tuple(_join(layer, f"parametrizations.weight.{n}") for n in originals)
        description = " + ".join(k.__name__ for k in kinds)
        if kinds == [WEIGHT_NORM]:
            return _Reparam(layer, "weight_norm", plist.original1, names, description)
        if kinds == [SPECTRAL_NORM]:
            return _Reparam(layer, "spectral_norm", plist.original, names, description)
        return _Reparam(layer, None, getattr(plist, originals[0]), names, description)
    for hook in forward_pre_hooks(mod):
        if isinstance(hook, WeightNormHook) and hook.name == "weight":
            names = (_join(layer, "weight_g"), _join(layer, "weight_v"))
            return _Reparam(layer, "weight_norm", mod.get_parameter("weight_v"), names, "weight_norm")
        if isinstance(hook, SpectralNormHook) and hook.name == "weight":
            original = mod.get_parameter("weight_orig")
            return _Reparam(layer, "spectral_norm", original, (_join(layer, "weight_orig"),), "spectral_norm")
    return None


def select_targets(module: nn.Module, patterns: Sequence[str] | None = None) -> Selection:
    """The tensors to prune: by the default rule (``patterns=None``) or by names and glob patterns.

    The default rule takes every linear map: the weight of every ``nn.Linear``, ``nn.ConvNd``,
    ``nn.ConvTransposeNd`` and library class of :data:`LIBRARY_LINEAR` (Hugging Face's ``Conv1D``,
    whose ``(in, out)`` weight is pruned by the same magnitudes as its ``nn.Linear`` twin's), and the
    packed projections of ``nn.MultiheadAttention``. Embeddings stay out unless tied to a pruned
    head. A pattern may use any name of a shared parameter, and a re-parametrized layer's
    ``<layer>.weight``.

    Raises:
        ValueError: If nothing is chosen or a pattern matches nothing (the message lists the names),
            a chosen layer weight is computed by an unknown parametrization, or a parameter is not
            materialized.
    """
    index = _Index(module)
    if patterns is None:
        targets = index.by_default_rule()
        if not targets:
            raise ValueError(
                "LotteryTicketCallback found nothing to prune: the module has no linear map (nn.Linear, nn.ConvNd, "
                "nn.ConvTransposeNd, Conv1D, attention projection). Pass `parameters=[...]` with names or glob "
                "patterns; parameters: "
                f"{', '.join(name for names in index.names.values() for name in names) or '(none)'}."
            )
        return Selection(tuple(targets), tuple(index.left_out(targets)), tuple(index.recognised()))
    return Selection(tuple(index.by_patterns(patterns)))


def resolve_targets(module: nn.Module, names: Sequence[str]) -> list[Target]:
    """The targets of ``names`` (first names, as :func:`select_targets` gave them) in ``module``.

    Raises:
        ValueError: If the module has no parameter of one of the names.
    """
    index = _Index(module)
    missing = [n for n in names if n not in index.params]
    if missing:
        raise ValueError(
            f"The model has no parameter(s) {missing} that the lottery masks were made for; "
            f"its parameters are: {', '.join(index.params)}."
        )
    return [index.target(index.params[n], index.reparam_of(index.params[n])) for n in names]


def resolve_rates(rates: Mapping[str, float], targets: Sequence[Target]) -> dict[str, float]:
    """Per-tensor rates keyed by target name, from patterns over the targets' names and aliases.

    Raises:
        ValueError: If a pattern matches no target; the message lists the names.
    """
    owner = {name: t.name for t in targets for name in (t.name, *t.aliases)}
    out: dict[str, float] = {}
    for pattern, rate in rates.items():
        for name in match_names([pattern], list(owner), "rates"):
            out[owner[name]] = rate
    return out


def plan_rates(targets: Sequence[Target], amount: float, scope: Scope, rates: Mapping[str, float]) -> dict[str, float]:
    """:func:`resolve_rates`, checked against the pruning plan (``amount``, ``scope``) before anything trains.

    Raises:
        ValueError: If a pattern matches no target, or the rates and the plan do not fit together.
    """
    resolved = resolve_rates(rates, targets)
    plan_groups([t.name for t in targets], amount, scope, resolved)
    return resolved


@torch.no_grad()
def _computed_weight(layer: nn.Module) -> Tensor:
    if parametrize.is_parametrized(layer, "weight"):
        plist = _weight_parametrizations(layer)
        training = plist.training
        plist.train(False)  # no power iteration of spectral norm: reading the weight changes nothing
        try:
            return plist().detach()
        finally:
            plist.train(training)
    for hook in forward_pre_hooks(layer):
        if isinstance(hook, WeightNormHook) and hook.name == "weight":
            return hook.compute_weight(layer).detach()
        if isinstance(hook, SpectralNormHook) and hook.name == "weight":
            return hook.compute_weight(layer, do_power_iteration=False).detach()
    raise ValueError(f"{type(layer).__name__} no longer computes its weight by a known parametrization.")


def magnitudes(module: nn.Module, targets: Sequence[Target]) -> dict[str, Tensor]:
    """The tensors whose magnitudes rank each target's weights: the weight a layer computes, or the parameter."""
    params = dict(module.named_parameters())
    modules = dict(module.named_modules())
    out = {}
    for t in targets:
        tensor = params[t.name] if t.layer is None else _computed_weight(modules[t.layer])
        out[t.name] = tensor.detach()
    return out
