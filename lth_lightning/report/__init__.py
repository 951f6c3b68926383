"""The report of finished experiments: tables over seeds, and the papers' claims checked on them.

Modules: :mod:`.readout` (an experiment read back from its folder), :mod:`.table` (every series by
round and seed, summaries), :mod:`.claims` (the papers' claims and settings as data), :mod:`.stats`
(the test, its level, Holm's correction), :mod:`.verdicts` (each claim's two questions, censoring, the
setting), :mod:`.render` and :mod:`.render_claims` (Markdown and CSV), :mod:`.save` (what ``results/``
keeps), :mod:`.command` (``lth report``). Lightning-free, as ``lth aggregate`` is.
"""
