"""Which test sequence a result measured: its name and class, as result.json's conditions.source records them.

Results written before test sets carry neither; their sequence is the clip's file stem
(`builtin:carphone` is `carphone`, `s3://clips/BQMall_832x480_60.yuv` is `BQMall_832x480_60`)
and they have no class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from codeclab.experiments.result import Result

AVERAGE = "average"
CLASS_PREFIX = "class:"  # a class average's row, e.g. class:B


@dataclass(frozen=True)
class SequenceId:
    name: str
    class_name: str | None  # e.g. "B", "mini-qcif"; None when the result names none

    @property
    def sort_key(self) -> tuple[str, str]:
        """Tables and panels list sequences by name as people read it, whatever the case."""
        return self.name.casefold(), self.class_name or ""

    @property
    def heading(self) -> str:
        return f"{self.name} (class {self.class_name})" if self.class_name else self.name


def sequence_of(result: Result) -> SequenceId:
    source: Mapping[str, object] = result["conditions"]["source"]
    name, class_name = source.get("sequence"), source.get("class")
    return SequenceId(
        name if isinstance(name, str) and name else clip_stem(str(source.get("clip") or "?")),
        class_name if isinstance(class_name, str) and class_name else None,
    )


def clip_stem(clip: str) -> str:
    """The clip's file name without its extension, whatever scheme names it."""
    return PurePosixPath(clip.removeprefix("builtin:")).stem or clip
