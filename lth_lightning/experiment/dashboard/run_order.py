"""Where a folder's story sorts among its TensorBoard runs: first, so that plain TensorBoard shows it as
``lth dashboard`` does.

TensorBoard orders runs by their first event, which gives each run its colour. A run folder's training run
(``tensorboard/training``; ``round_NN`` in folders made before it) is made before its summary, and the summary is
written anew after every round, so ``tensorboard --logdir <experiment folder>`` would list the summary last, in
other colours. Each summary run therefore opens with a start event dated just before the folder's first
training run: the experiment's summary one second earlier than its seeds', then the series in their order.
(TensorBoard also switches every run off when there are more than 40, so each seed writes its trainings' curves to
one run: :attr:`~lth_lightning.experiment.record.paths.RunPaths.training_run`.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.summary.writer.record_writer import RecordWriter

__all__ = ["EARLIER", "first_training_time", "write_start_event"]

EARLIER = 1.0  # seconds before its first training run a run's summary starts; twice that for an experiment's
_EVENT_TIME = re.compile(r"events\.out\.tfevents\.(\d+)\.")


def first_training_time(tensorboard_dirs: Iterable[Path]) -> float | None:
    """The wall time (whole seconds, as event files are named) of the earliest training run in these logdirs."""
    times = [
        int(match.group(1))
        for logdir in tensorboard_dirs
        for events in (*logdir.glob("training/events.out.tfevents.*"), *logdir.glob("round_*/events.out.tfevents.*"))
        if (match := _EVENT_TIME.match(events.name))
    ]
    return float(min(times)) if times else None


def write_start_event(run: Path, wall_time: float) -> Path:
    """An event file whose one event (the file's version) dates ``run``'s start to ``wall_time``; its name sorts
    before the run's other event files, which TensorBoard reads in name order."""
    run.mkdir(parents=True, exist_ok=True)
    path = run / f"events.out.tfevents.{int(wall_time)}.lth.start"
    with open(path, "wb") as fh:
        RecordWriter(fh).write(Event(wall_time=wall_time, file_version="brain.Event:2").SerializeToString())
    return path
