"""`codeclab doctor`: which sandbox layers this host can apply, found by building them for real.

It runs one child with a no-op codec under the trusted policy (every layer wanted, none
required), so each layer is either applied and checked from outside, or reported missing
with the reason. Nothing is guessed from kernel versions.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from codeclab.worker.errors import WorkerError
from codeclab.worker.sandbox import landlock
from codeclab.worker.sandbox.layers import REQUIRED, Applied, Layer, SandboxLimits, SandboxPolicy
from codeclab.worker.sandbox.protocol import PublicHeader
from codeclab.worker.sandbox.runner import ChildJob, run_child

NO_OP = "def encode(frames, params):\n    return b'x'\n\ndef decode(bitstream, header):\n    return None\n"


@dataclass(frozen=True)
class LayerReport:
    layer: Layer
    required: bool
    applied: bool
    detail: str


@dataclass(frozen=True)
class Diagnosis:
    host: str
    layers: list[LayerReport]
    error: str  # the probe could not run at all

    @property
    def untrusted_code_can_run(self) -> bool:
        return not self.error and all(report.applied for report in self.layers if report.required)


def diagnose() -> Diagnosis:
    job = ChildJob(role="encode", code=NO_OP, header=PublicHeader(2, 2, 1, "1"), payload=bytes(6),
                   max_output_bytes=16, allowed_imports=["numpy"])  # fmt: skip
    host = (
        f"Linux {platform.release()}, {'root' if os.geteuid() == 0 else f'uid {os.geteuid()}'}, "
        f"Landlock ABI {landlock.abi_version()}"
    )
    try:
        applied = run_child(job, SandboxLimits(wall_seconds=120), SandboxPolicy.for_code(trusted=True)).applied
    except WorkerError as exc:
        return Diagnosis(host, [], str(exc))
    return Diagnosis(host, [_report(layer, applied) for layer in Layer], "")


def _report(layer: Layer, applied: Applied) -> LayerReport:
    detail = applied.layers.get(layer.value) or applied.missing.get(layer.value, "not applied")
    return LayerReport(layer, layer in REQUIRED, layer.value in applied.layers, detail)
