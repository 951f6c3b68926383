"""The multi-round experiment around the callback, by concern (each sub-package's ``__init__`` says what it holds).

- :mod:`.spec`: ``ExperimentSpec``, the experiment's options, each declared once;
- :mod:`.controls`: the science a ticket is checked against: the controls' registry, pruning at initialization;
- :mod:`.record`: the record on disk: a run folder's paths, its store and lock, identity, rows, aggregates;
- :mod:`.training`: driving one Trainer: its settings, the callbacks it gets, what it measured;
- :mod:`.dashboard`: what presents stored runs: TensorBoard summaries and plots, seeds and comparisons;
- :mod:`.rounds`: running rounds: the round loop, its two executors (sequential, stacked), each seed's run.

Data flows one way: the rounds run, the record stores, the dashboard draws what was stored. The Python entry
points (``run_lottery``, ``run_seeds``) are :mod:`lth_lightning.api`.
"""
