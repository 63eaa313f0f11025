"""Which test sequence a result measured: its name and class, as result.json's conditions.source records them.

Results written before test sets carry neither; their sequence is the clip's file stem
(`builtin:carphone` is `carphone`, `s3://clips/BQMall_832x480_60.yuv` is `BQMall_832x480_60`)
and they have no class.
"""

from __future__ import annotations

from dataclasses import dataclass

from codeclab.experiments.result import Result
from codeclab.experiments.test_sets import sequence_name

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
    source = result["conditions"]["source"]
    return SequenceId(source.get("sequence") or sequence_name(source["clip"]), source.get("class") or None)
