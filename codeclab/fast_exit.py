"""A command's exit without Python's last garbage collections over everything it loaded.

At exit CPython collects cyclic garbage over every object still alive: after a `codeclab run` (the emulator, botocore's
models, moto's backends) that took about a second, and 0.4 s of every worker process, longer than a one-frame job's
encode, decode and metrics together. Frozen objects are not walked. Nothing of ours waits on a collection to finish
a write: every file is closed (and synced, where it must last) before the command returns, and weakref finalisers
(temporary folders) still run at exit.
"""

from __future__ import annotations

import atexit
import gc


def skip_final_collections() -> None:
    """Freeze every object alive at exit, so the interpreter's last collections pass over them."""
    atexit.register(gc.freeze)
