"""What an experiment's executors do with a :class:`~.lottery_ticket.LotteryTicketCallback` outside its fits.

Three things, each through the callback's public state (:attr:`~.lottery_ticket.LotteryTicketCallback.state`,
:meth:`~.lottery_ticket.LotteryTicketCallback.set_state`): a fresh callback with another's settings (one per
seed), a control's fork (the same round under other masks and another start), and a round that a stacked
network trained for the callback, recorded as its own fit would have recorded it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from lth_lightning.callbacks.lottery_ticket import LotteryTicketCallback

__all__ = ["fork", "fresh_copy", "record_round"]


def fresh_copy(callback: LotteryTicketCallback, **changes: Any) -> LotteryTicketCallback:
    """A callback with ``callback``'s settings (less ``changes``), at the start of an experiment."""
    return LotteryTicketCallback(**{**dataclasses.asdict(callback.settings), **changes})


def fork(
    callback: LotteryTicketCallback, masks: Mapping[str, Tensor], snapshot: Mapping[str, Tensor]
) -> LotteryTicketCallback:
    """A new callback whose next fit trains ``masks`` from ``snapshot`` (for control experiments).

    The fork has ``callback``'s settings (retraining by rewinding: a control trains from its own initial state;
    quiet), is at the same round, and is otherwise independent: its next ``fit`` loads ``snapshot`` into the
    module, applies ``masks`` and keeps them enforced, exactly as a round of the ticket itself.

    Raises:
        ValueError: If ``masks`` does not name the same parameters as ``callback``'s masks.
    """
    forked = fresh_copy(callback, retrain="rewind", verbose=False)
    forked.set_state(callback.state.fork(masks, snapshot))
    return forked


def record_round(
    callback: LotteryTicketCallback,
    init: Mapping[str, Tensor],
    next_masks: Mapping[str, Tensor],
    *,
    steps: int,
    epochs: int,
    metrics: Mapping[str, float],
) -> None:
    """A round ``callback``'s network trained elsewhere (as a member of a stacked network) ends as its own fit would
    have ended it: the first round starts the experiment from ``init`` (every weight alive), a later one trains the
    current masks; ``next_masks`` become the next round's, and the round joins the history.

    Raises:
        ValueError: During a fit, when the live state must not change.
    """
    state = callback.state
    if state.phase == "init":
        state.start({name: tuple(mask.shape) for name, mask in next_masks.items()}, init)
    else:
        state.begin_fit()
    state.finish(next_masks, steps=steps, epochs=epochs, metrics=metrics)
    callback.set_state(state)
