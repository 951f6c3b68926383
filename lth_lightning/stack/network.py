"""K copies of one network as one: every parameter stacked along a leading member dimension.

The stacked network keeps the template's module tree and parameter names (``layers.0.weight``
now has shape ``(K, 256, 784)``), so masks, pruning (``member_dims=1``) and checkpoints keep their
names. Two ways to run it, both checked member by member against the template before use:

* **batched**: a network of ``nn.Linear`` layers and element-wise activations runs with each
  ``nn.Linear`` replaced by :class:`StackedLinear`: one matrix product for all members on the
  shared input, then one batched product per layer;
* **vmap**: any other network runs as ``torch.func.vmap`` over ``functional_call`` of the template.

A network neither can run exactly (running-stat BatchNorm and other buffers updated in place,
random layers such as dropout, data-dependent control flow, parametrizations) is refused with
the reason; it trains with ``stack=False``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn.utils import parametrize

__all__ = ["StackedForward", "StackedLinear", "StackingError", "stack_network", "stack_states", "unstack_state"]

Kind = Literal["batched", "vmap"]
_ELEMENTWISE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Identity,
    nn.Flatten,
    nn.Sequential,
    nn.ModuleList,
)


class StackingError(ValueError):
    """A network that cannot be trained as stacked members, with the reason."""


def stack_states(states: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """``K`` states with the same names and shapes -> one state of ``(K, *shape)`` tensors."""
    return {name: torch.stack([state[name].detach() for state in states]) for name in states[0]}


def unstack_state(stacked: Mapping[str, Tensor], member: int) -> dict[str, Tensor]:
    """Member ``member``'s state out of a stacked one (copies, on the CPU)."""
    return {name: tensor[member].detach().to("cpu", copy=True) for name, tensor in stacked.items()}


class StackedLinear(nn.Module):
    """``K`` linear layers: ``weight`` ``(K, out, in)``, ``bias`` ``(K, out)``.

    Activations between stacked layers are feature-major, ``(K, features, B)``, so that no layer
    transposes or copies them: the input shared by the members, ``(B, in)``, takes one matrix
    product for all of them (``W_all @ x.T``); the members' own inputs, ``(K, in, B)``, one batched
    product (``W_k @ h_k``). The output is ``(K, out, B)``; :class:`StackedForward` returns the
    network's output as ``(K, B, out)``, a view.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        members, out, inputs = self.weight.shape
        if x.dim() == 2:  # the members' first layer: W_k @ x.T for every k in one product
            weight = self.weight.reshape(members * out, inputs)
            if self.bias is None:
                return (weight @ x.t()).view(members, out, x.shape[0])
            return torch.addmm(self.bias.reshape(-1, 1), weight, x.t()).view(members, out, x.shape[0])
        if self.bias is None:
            return torch.bmm(self.weight, x)
        return torch.baddbmm(self.bias[:, :, None], self.weight, x)


class StackedForward:
    """How a stacked network runs: ``batched`` (its own forward) or ``vmap`` over the template's.

    A plain object (not a module): the template it keeps is on the ``meta`` device, without data.
    """

    def __init__(self, template: nn.Module, kind: Kind) -> None:
        self.kind: Kind = kind
        self.base = copy.deepcopy(template).to("meta")

    def __call__(self, net: nn.Module, x: Tensor) -> Tensor:
        """The members' outputs, ``(K, B, ...)``, for the shared input ``x``."""
        if self.kind == "batched":
            return net(x).transpose(1, 2)  # (K, out, B), feature-major inside, as (K, B, out)
        return self._vmapped(net, x, None)

    def per_member(self, net: nn.Module, x: Tensor) -> Tensor:
        """The members' outputs, ``(K, B, ...)``, each for its own input: ``x`` is ``(K, B, ...)``. Runs under
        ``vmap`` whatever the kind (the batched tree has the template's parameter names)."""
        return self._vmapped(net, x, 0)

    def _vmapped(self, net: nn.Module, x: Tensor, input_dim: int | None) -> Tensor:
        """The template's forward under ``vmap`` over the members' parameters, and over ``x``'s first dimension
        too when ``input_dim`` is 0 (None: ``x`` shared)."""
        params: dict[str, Tensor] = dict(net.named_parameters())

        def one(member: dict[str, Tensor], inputs: Tensor) -> Tensor:
            return functional_call(self.base, member, (inputs,))

        return vmap(one, in_dims=(0, input_dim))(params, x)


def _refuse_unsupported(net: nn.Module) -> None:
    buffers = [name for name, _ in net.named_buffers()]
    if buffers:
        raise StackingError(
            f"{type(net).__name__} has buffers ({', '.join(buffers[:4])}{', ...' if len(buffers) > 4 else ''}), "
            "updated in place during training (BatchNorm's running statistics, say): stacked members cannot "
            "keep them apart. Train it with stack=false (--lottery.stack false)."
        )
    parametrized = [name for name, mod in net.named_modules() if parametrize.is_parametrized(mod)]
    if parametrized:
        raise StackingError(
            f"{type(net).__name__} has parametrized layers ({', '.join(parametrized)}): they are not stacked. "
            "Train it with stack=false (--lottery.stack false)."
        )


def _batched_tree(net: nn.Module, stacked: Mapping[str, Tensor]) -> nn.Module | None:
    """The template with each ``nn.Linear`` a :class:`StackedLinear`, or None if other layers hold parameters."""
    if not all(isinstance(m, (nn.Linear, *_ELEMENTWISE)) for m in net.modules() if m is not net):
        return None
    if any(p for p in net.parameters(recurse=False)):
        return None
    tree = copy.deepcopy(net)
    for name, module in list(tree.named_modules()):
        if isinstance(module, nn.Linear):
            parent_name, _, child = name.rpartition(".")
            parent = tree.get_submodule(parent_name)
            bias = stacked.get(f"{name}.bias")
            setattr(parent, child, StackedLinear(stacked[f"{name}.weight"], bias))
    return tree


def _vmap_tree(net: nn.Module, stacked: Mapping[str, Tensor]) -> nn.Module:
    """The template whose parameters are replaced by the stacked ones (it holds them; vmap runs them)."""
    tree = copy.deepcopy(net)
    for name, value in stacked.items():
        parent_name, _, leaf = name.rpartition(".")
        tree.get_submodule(parent_name).register_parameter(leaf, nn.Parameter(value.detach().clone()))
    return tree


@torch.no_grad()
def _matches(
    net: nn.Module, tree: nn.Module, forward: StackedForward, states: Sequence[Mapping[str, Tensor]], probe: Tensor
) -> bool:
    was_training = net.training
    net.train()
    tree.train()
    try:
        expected = torch.stack([functional_call(net, dict(state), (probe,)) for state in states])
    finally:
        net.train(was_training)
    got = forward(tree, probe)
    return got.shape == expected.shape and bool(torch.allclose(got, expected, rtol=1e-4, atol=1e-5))


def stack_network(
    net: nn.Module, states: Sequence[Mapping[str, Tensor]], probe: Tensor, kind: Kind | None = None
) -> tuple[nn.Module, StackedForward]:
    """The members ``states`` (each a state of ``net``) as one stacked network, and how to run it.

    Args:
        net: The template network.
        states: One state per member (parameter names of ``net``), at least one.
        probe: A batch of inputs: the stacked network must give every member exactly its own output.
        kind: Force ``"batched"`` or ``"vmap"``; by default the batched path where it applies.

    Raises:
        StackingError: If the network cannot run as stacked members (the message says why).
    """
    _refuse_unsupported(net)
    # One member is checked beside a shifted copy of itself, so that members mixed up would show.
    alone = len(states) == 1
    check = [*states, {k: v + 0.5 for k, v in states[0].items()}] if alone else list(states)
    stacked = stack_states(states)
    checked = stack_states(check) if alone else stacked
    batched = _batched_tree(net, stacked) if kind in (None, "batched") else None
    if batched is not None:
        forward = StackedForward(net, "batched")
        trial = _batched_tree(net, checked) if alone else batched
        if trial is not None and _matches(net, trial, forward, check, probe):
            return batched, forward
    tree = _vmap_tree(net, checked)
    forward = StackedForward(net, "vmap")
    try:
        ok = _matches(net, tree, forward, check, probe)
    except Exception as err:  # torch.func says why: randomness, in-place updates, data-dependent control flow
        raise StackingError(
            f"{type(net).__name__} cannot run as stacked members under torch.func.vmap: {err} "
            "Train it with stack=false (--lottery.stack false)."
        ) from err
    if not ok:
        raise StackingError(
            f"{type(net).__name__} gives stacked members other outputs than it gives each member alone. "
            "Train it with stack=false (--lottery.stack false)."
        )
    return (_vmap_tree(net, stacked) if alone else tree), forward
