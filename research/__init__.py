"""The lab: pilots, the training campaign and probes behind ssic's design choices (not the product).

Run from the repository root as ``python -m research.<module>``; see ``research/README.md``.
"""
