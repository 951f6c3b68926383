"""The callbacks a Lightning project adds to its Trainer, and their state as plain data.

Modules: :mod:`.lottery_ticket` (``LotteryTicketCallback``: prune, rewind, keep pruned weights at zero),
:mod:`.enforcement` (how the pruned weights are kept at zero during training), :mod:`.state` (``LotteryState``,
where an experiment stands), :mod:`.late_start` (a training continued from step ``k``) and
:mod:`.early_stopping` (``EarlyStoppingTracker``: the step of the best validation value).
"""
