"""Custom codec code runs here: an AST and import check, then separate child processes for the
encoder and the decoder, each with rlimits, a scrubbed environment, a private working folder,
a non-root uid where the worker is root, seccomp-bpf and a wall-clock timeout.

The AST check gives quick, clear errors; containment does not depend on it.
"""
