"""Running rounds: the round loop over every unfinished round, its two executors (one network at a time, or
every member of a round stacked in one fit), each run's context, instability, and the seeds of an experiment."""
