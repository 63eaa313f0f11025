"""Custom codec code runs here: encoder and decoder each in a child process of their own, under layers
that the worker checks from outside before any user code runs (see docs/sandbox.md).

- `static_check`: the AST and import check, a readable gate with line numbers.
- `runner`: the worker's side: start a child, feed it over stdin, read its framed answers off a pipe.
- `child`: the child's side: build every layer while single-threaded, report READY, run the user's module.
- `layers`: which layers exist, which untrusted code requires, and the record of what was applied.
- `verify`: the worker's check of a child's layers in /proc.
- `identity`, `landlock`, `seccomp_filter`, `scratch`, `readable`: one kernel mechanism each.
- `protocol`: the request and the frames that pass between the two.
- `doctor`: which layers this host can apply (`codeclab doctor`).
"""
