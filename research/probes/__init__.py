"""One-off measurements behind a decision, each recorded in ``research/results/probes/``."""
