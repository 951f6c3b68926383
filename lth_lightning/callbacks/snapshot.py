"""The rewind snapshot: one copy of a module's state, kept where asked, and the rewind that loads it back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["SnapshotDevice", "place_snapshot", "rewind", "take_snapshot"]

SnapshotDevice = Literal["cpu", "module"]


def _placed(tensor: Tensor, device: torch.device, where: SnapshotDevice, *, copy: bool) -> Tensor:
    """``tensor`` where ``where`` says: on the module's ``device``, or on the CPU (pinned when the module is on a GPU,
    so that the rewind copies without staging)."""
    if where == "module":
        return tensor.to(device, copy=copy)
    if device.type == "cuda" and not tensor.is_pinned():
        return torch.empty_like(tensor, device="cpu", pin_memory=True).copy_(tensor)
    return tensor.to("cpu", copy=copy)


def take_snapshot(module: nn.Module, device: torch.device, where: SnapshotDevice) -> dict[str, Tensor]:
    """One copy of ``module``'s state (its ``state_dict``), for a module on ``device``, where ``where`` says, in its
    dtypes."""
    return {k: _placed(v.detach(), device, where, copy=True) for k, v in module.state_dict().items()}


def place_snapshot(snapshot: Mapping[str, Tensor], device: torch.device, where: SnapshotDevice) -> dict[str, Tensor]:
    """A snapshot restored from a checkpoint (or made elsewhere) moved to where ``where`` says, for a module on
    ``device``; tensors already there are not copied."""
    return {k: _placed(v, device, where, copy=False) for k, v in snapshot.items()}


@torch.no_grad()
def rewind(module: nn.Module, snapshot: Mapping[str, Tensor] | None) -> None:
    """Load ``snapshot`` into ``module``'s state in place (parameters and buffers keep their identity).

    Raises:
        RuntimeError: If there is no snapshot.
        ValueError: If the module lacks an entry of the snapshot, or an entry's shape differs.
    """
    if snapshot is None:
        raise RuntimeError("LotteryTicketCallback has no rewind snapshot; it is taken during the first round.")
    state = module.state_dict()
    missing = sorted(set(snapshot) - set(state))
    if missing:
        raise ValueError(f"Cannot rewind: the model lacks state entries {missing} of the snapshot.")
    for name, value in snapshot.items():
        target = state[name]
        if target.shape != value.shape:
            raise ValueError(
                f"Cannot rewind {name!r}: snapshot shape {tuple(value.shape)}, model shape {tuple(target.shape)}."
            )
        target.copy_(value, non_blocking=value.is_pinned())
