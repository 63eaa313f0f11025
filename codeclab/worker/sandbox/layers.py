"""The sandbox's layers, which of them a run requires, and the record of what was applied.

Untrusted code runs only when every required layer is in place and the worker has checked
it from outside the child; otherwise the run fails closed with SANDBOX_UNAVAILABLE. Code
marked `"trusted": true` runs with whatever this host can apply, and that is recorded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from codeclab.experiments.limits import GIB, codec_caps, over_codec_caps
from codeclab.worker.errors import InvalidSpec
from codeclab.worker.sandbox.seccomp_filter import ALL_FAMILIES, Family

if TYPE_CHECKING:  # the sandboxed child imports this module: no jsonschema at run time
    from codeclab.experiments.schema import CodecLimitsSpec


class Layer(StrEnum):
    RLIMITS = "rlimits"  # CPU seconds, file size, address space, no core dumps
    IDENTITY = "identity"  # a uid of its own, no capabilities, no_new_privs
    PIDS = "pids"  # RLIMIT_NPROC under that uid: a cap on threads the kernel enforces
    LANDLOCK = "landlock"  # read only the interpreter and allowed packages, write only the scratch folder
    SIGNAL_SCOPE = "signal_scope"  # Landlock ABI 6: no signals or abstract sockets out of the child's domain
    SECCOMP = "seccomp"  # the system call families of seccomp_filter
    NAMESPACES = "namespaces"  # fresh mount, IPC and network namespaces
    SCRATCH = "scratch"  # a size-capped scratch folder (a tmpfs)


# Layers that only work on top of another.
NEEDS = {Layer.PIDS: Layer.IDENTITY, Layer.SIGNAL_SCOPE: Layer.LANDLOCK}
# What untrusted code needs on any host; the rest is extra depth where the kernel offers it.
REQUIRED = frozenset({Layer.RLIMITS, Layer.IDENTITY, Layer.PIDS, Layer.LANDLOCK, Layer.SECCOMP, Layer.SCRATCH})
OPTIONAL = frozenset(Layer) - REQUIRED
MIB = 1 << 20
# Where a host that allows no private mount (a Docker container) gives the children a size-capped tmpfs.
SCRATCH_ROOT_ENV = "CODECLAB_SANDBOX_SCRATCH"
SCRATCH_BYTES = 512 * MIB


@dataclass(frozen=True)
class SandboxLimits:
    wall_seconds: float = 600.0
    cpu_seconds: int = 600
    file_bytes: int = 2 * GIB
    address_space_bytes: int | None = 16 * GIB  # None with CUDA: its driver maps far more virtual memory
    scratch_bytes: int = SCRATCH_BYTES
    max_threads: int = 512


def codec_limits(asked: CodecLimitsSpec, cuda: bool, environ: Mapping[str, str] = os.environ) -> SandboxLimits:
    """The codec child's limits: the defaults, or what the spec asks for under the operator's caps (which the API
    and CreateRecord checked too, from the same settings: this is the last line)."""
    over = over_codec_caps(asked, codec_caps(environ))
    if over:
        raise InvalidSpec("; ".join(f"{path}: {message}" for path, message in over))
    base = SandboxLimits()
    memory = asked.get("memory_bytes", base.address_space_bytes)
    return replace(
        base,
        wall_seconds=float(asked.get("wall_seconds", base.wall_seconds)),
        cpu_seconds=asked.get("cpu_seconds", base.cpu_seconds),
        address_space_bytes=None if cuda else memory,
    )


@dataclass(frozen=True)
class SandboxPolicy:
    required: frozenset[Layer] = REQUIRED
    optional: frozenset[Layer] = OPTIONAL
    seccomp: frozenset[Family] = ALL_FAMILIES
    trusted: bool = False

    @classmethod
    def for_code(cls, trusted: bool) -> SandboxPolicy:
        """Untrusted code needs every required layer; trusted code gets what the host offers."""
        return cls(required=frozenset(), optional=frozenset(Layer), trusted=True) if trusted else cls()

    @property
    def wanted(self) -> frozenset[Layer]:
        return self.required | self.optional

    def without(self, *parts: Layer | Family) -> SandboxPolicy:
        """The same policy with layers or seccomp families taken out (and what needs them): the red-team controls."""
        layers = {p for p in parts if isinstance(p, Layer)}
        layers |= {layer for layer, needed in NEEDS.items() if needed in layers}
        families = {p for p in parts if isinstance(p, Family)}
        return replace(
            self, required=self.required - layers, optional=self.optional - layers, seccomp=self.seccomp - families
        )


@dataclass(frozen=True)
class Applied:
    """What the worker verified in the running child before any user code ran, and what was missing."""

    layers: dict[str, str] = field(default_factory=dict)  # layer -> what was checked
    missing: dict[str, str] = field(default_factory=dict)  # layer -> why it is not there
    trusted: bool = False

    def as_conditions(self) -> dict[str, object]:
        return {"applied": self.layers, "missing": self.missing, "trusted": self.trusted}
