"""``LotteryState``: where an iterative-magnitude-pruning experiment stands, as plain data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import Tensor

from lth_lightning.pruning.magnitude import sparsity_report
from lth_lightning.pruning.packing import pack_masks, unpack_masks

__all__ = ["LotteryState", "Phase"]

Phase = Literal["init", "training", "pruned"]
_PHASES = ("init", "training", "pruned")


def _copy(tensors: Mapping[str, Tensor], dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", dtype=dtype, copy=True) for k, v in tensors.items()}


@dataclass
class LotteryState:
    """The state of a lottery-ticket experiment: no module, no Trainer, only names and tensors.

    Masks are boolean CPU tensors that are never modified in place: a round replaces them, so
    ``round_masks`` and ``masks`` share their tensors while a round trains. The snapshot is kept
    where its owner placed it (the CPU, pinned CPU memory or the module's device), in the
    module's dtypes.

    Attributes:
        round: Index of the current (or last trained) round; 0 is the dense network.
        phase: ``"init"`` before the first fit, ``"training"`` during a round, ``"pruned"`` after it.
        names: The pruned tensors, by parameter name (the first name of a shared tensor).
        masks: Boolean masks keyed by name; after a round they are the *next* round's.
        round_masks: The masks the current (or last trained) round trains with.
        snapshot: The module state rewound to (state-dict names), or None before it is taken.
        history: One record per finished round (round, density, layer densities, steps, metrics).
        member_dims: Leading member dimensions of the masks (1 for stacked members, each pruned on its own).
        final_lrs: The learning rates of the dense round's last optimizer step, per optimizer and parameter
            group (recorded for fine-tuning, which retrains at them); empty when not recorded.
    """

    round: int = 0
    phase: Phase = "init"
    names: list[str] = field(default_factory=list)
    masks: dict[str, Tensor] = field(default_factory=dict)
    round_masks: dict[str, Tensor] = field(default_factory=dict)
    snapshot: dict[str, Tensor] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    member_dims: int = 0
    final_lrs: list[list[float]] = field(default_factory=list)

    @property
    def density(self) -> float:
        """Fraction of the pruned tensors' weights alive under ``masks`` (1.0 before any mask)."""
        return sparsity_report(self.masks).density if self.masks else 1.0

    def start(self, shapes: Mapping[str, Sequence[int]], snapshot: Mapping[str, Tensor] | None) -> None:
        """The first fit: round 0 trains every weight of the tensors ``shapes`` names.

        Args:
            shapes: The pruned tensors' shapes keyed by name, in pruning order.
            snapshot: The state to rewind to, or None when it is taken later (late rewinding).
        """
        self.names = list(shapes)
        self.masks = {name: torch.ones(tuple(shape), dtype=torch.bool) for name, shape in shapes.items()}
        self.round_masks = dict(self.masks)
        self.snapshot = None if snapshot is None else _copy(snapshot)
        self.round, self.phase = 0, "training"

    def begin_fit(self) -> None:
        """A later fit starts: after a finished round the next one begins; mid-round (a resume) it continues.

        Raises:
            RuntimeError: Before :meth:`start`.
        """
        if self.phase == "init":
            raise RuntimeError("The lottery state has not started: the first fit calls start().")
        if self.phase == "pruned":
            self.round, self.phase = self.round + 1, "training"
        self.round_masks = dict(self.masks)

    def finish(self, masks: Mapping[str, Tensor], *, steps: int, epochs: int, metrics: Mapping[str, float]) -> None:
        """The round ends: ``masks`` become the next round's, and its record joins the history.

        Boolean CPU masks are kept as given, not copied: the caller hands them over. The record:
        the round, its density and each tensor's (from the masks it trained with), ``steps`` and
        ``epochs`` trained, the next round's density, and the round's ``metrics``.

        Raises:
            RuntimeError: If no round is being trained.
        """
        if self.phase != "training":
            raise RuntimeError(f"No lottery round is being trained (phase {self.phase!r}).")
        trained = sparsity_report(self.round_masks)
        self.masks = {n: masks[n].to("cpu", torch.bool) for n in self.names}
        self.history.append(
            {
                "round": self.round,
                "density": trained.density,
                "layer_density": {t.name: t.density for t in trained.tensors},
                "steps": steps,
                "epochs": epochs,
                "next_density": self.density,
                "metrics": dict(metrics),
            }
        )
        self.phase = "pruned"

    def as_dict(self) -> dict[str, Any]:
        """Plain containers of tensors and numbers (CPU copies), loadable with ``torch.load(weights_only=True)``."""
        return {
            **self._fields(),
            "masks": _copy(self.masks),
            "round_masks": _copy(self.round_masks),
            "snapshot": None if self.snapshot is None else _copy(self.snapshot),
        }

    def packed(self) -> dict[str, Any]:
        """What a checkpoint holds: :meth:`as_dict` with the masks at one bit per weight and the snapshot
        not copied (its tensors themselves, on the CPU or their device), so saving costs no second copy."""
        return {
            **self._fields(),
            "masks": pack_masks(self.masks),
            "round_masks": pack_masks(self.round_masks),
            "snapshot": None if self.snapshot is None else dict(self.snapshot),
        }

    def _fields(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "phase": self.phase,
            "names": list(self.names),
            "history": [dict(h) for h in self.history],
            "member_dims": self.member_dims,
            "final_lrs": [list(lrs) for lrs in self.final_lrs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, copy: bool = True) -> LotteryState:
        """The state :meth:`as_dict` or :meth:`packed` wrote; masks unpacked to boolean CPU tensors.

        Args:
            data: The state, with packed or plain mask tensors (states saved before packing).
            copy: Copy the snapshot to the CPU (the default); ``False`` takes its tensors over as
                they are, for a state just loaded from a file that nothing else holds.

        Raises:
            ValueError: If the phase is not one of ``init``, ``training``, ``pruned``.
        """
        phase = data["phase"]
        if phase not in _PHASES:
            raise ValueError(f"Invalid phase {phase!r} in a lottery state; allowed: {', '.join(_PHASES)}.")
        snapshot = data["snapshot"]
        if snapshot is not None:
            snapshot = _copy(snapshot) if copy else dict(snapshot)
        masks = unpack_masks(data["masks"])
        round_masks = unpack_masks(data["round_masks"])
        if copy:
            masks, round_masks = _copy(masks), _copy(round_masks)
        return cls(
            round=int(data["round"]),
            phase=phase,
            names=list(data["names"]),
            masks=masks,
            round_masks=round_masks,
            snapshot=snapshot,
            history=[dict(h) for h in data["history"]],
            member_dims=int(data.get("member_dims", 0)),
            final_lrs=[[float(lr) for lr in lrs] for lrs in data.get("final_lrs", [])],
        )

    def fork(self, masks: Mapping[str, Tensor], snapshot: Mapping[str, Tensor]) -> LotteryState:
        """The state whose next fit trains ``masks`` from ``snapshot`` as this state's current round.

        This is how a control experiment retrains a round under other conditions.

        Raises:
            ValueError: If ``masks`` does not name exactly this state's tensors.
        """
        if set(masks) != set(self.names):
            raise ValueError(f"Control masks must name the parameters {self.names}, got {sorted(masks)}.")
        return replace(
            self,
            round=self.round - 1,  # the fork's next fit is this round again
            phase="pruned",
            names=list(self.names),
            masks=_copy({n: masks[n] for n in self.names}, torch.bool),
            round_masks={},
            snapshot=_copy(snapshot),
            history=[],
        )
