"""What `import` finds in the child under Landlock: the readable libraries, and nothing else.

Libraries import optional packages inside `try: ... except ImportError` (numpy's f2py tries
charset_normalizer, which scipy reaches). Under Landlock such a package is still listed in
site-packages but its files cannot be opened, so the import fails with PermissionError, which no
library expects. This finder, first on sys.meta_path, makes a top-level package outside the
readable folders look not installed: ModuleNotFoundError, as on a host without it. It widens
nothing: the kernel still refuses every file outside the rules.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path
from types import ModuleType


class ReadableOnly:
    def __init__(self, readable: Sequence[Path]) -> None:
        self.readable = tuple(readable)

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if path is not None:
            return None  # a submodule: found inside its package, which was readable to be imported
        try:
            spec = PathFinder.find_spec(name)
        except OSError:
            spec = None
            where: list[str] = ["?"]
        else:
            if spec is None:
                return None  # not installed: the next finders say so
            where = [spec.origin] if spec.origin else list(spec.submodule_search_locations or [])
        if where and all(self._readable(Path(w)) for w in where):
            return None  # the usual finders load it
        raise ModuleNotFoundError(f"No module named {name!r} (not readable in the codec sandbox)", name=name)

    def _readable(self, path: Path) -> bool:
        return any(path == root or root in path.parents for root in self.readable)


def install(readable: Sequence[Path]) -> None:
    sys.meta_path.insert(0, ReadableOnly(readable))
