"""Driving one Trainer of an experiment: its settings and logger, the Lightning callbacks the experiment adds
(progress, clock, record on start), and what a training measured."""
