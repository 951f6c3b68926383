"""The record on disk: every path of an experiment folder, what a run stores and reads back (once), the
folder's lock, what defines an experiment (its identity and folder name), a round's row, the seeds aggregated.
Lightning-free but for the store's rank."""
