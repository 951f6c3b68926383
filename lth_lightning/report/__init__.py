"""The report of finished experiments: tables over seeds, and the papers' claims checked on them.

Modules: :mod:`.readout` (an experiment read back from its folder), :mod:`.table` (every series by
round and seed, summaries), :mod:`.claims` (the papers' claims as data and the verdict rule),
:mod:`.render` (Markdown and CSV), :mod:`.save` (what ``results/`` keeps), :mod:`.command`
(``lth report``). Lightning-free, as ``lth aggregate`` is.
"""
