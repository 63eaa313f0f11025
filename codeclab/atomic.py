"""Files that are whole or absent: write a sibling, fsync it, rename it over the target.

A reader never sees half a file, whatever kills the writer (a full disk, SIGKILL, a power
cut after the fsync). On failure the partial sibling is removed and the OSError raised.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path
from typing import Any

# The storage itself refused, whatever was being written: full, over quota, or past a file-size limit.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def write_bytes(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        with partial.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_json(path: Path, value: Any) -> None:
    write_bytes(path, (json.dumps(value, indent=2, default=str) + "\n").encode())


def is_storage_error(error: BaseException) -> bool:
    """A full disk, a quota, or a file-size limit: a fault of where things are written, not of what."""
    return isinstance(error, OSError) and error.errno in STORAGE_ERRNOS
