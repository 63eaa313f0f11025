"""A codec package run in the sandbox: its folder readable and importable, its entry's encode and decode given `ctx`.

The package has been unpacked and its hashes checked before it gets here (codeclab/worker/packages/);
this class needs only its folder, its entry module, the weights files its manifest lists and the
device it asks for. Every module in the folder passes the same static check as inline code, with
the package's own modules and relative imports allowed. See docs/custom-codecs.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from codeclab.experiments.result import CodecConditions, PackageConditions
from codeclab.experiments.schema import CodecParams
from codeclab.worker.codecs.base import Codec, StreamHeader
from codeclab.worker.codecs.custom import CustomCodec, has_cuda
from codeclab.worker.errors import CodecFailure
from codeclab.worker.sandbox.layers import SandboxLimits, SandboxPolicy
from codeclab.worker.sandbox.protocol import PackageRequest, PublicHeader
from codeclab.worker.sandbox.runner import ChildJob
from codeclab.worker.sandbox.static_check import allowed_imports, check_package

DEVICES = ("cpu", "cuda", "any")
WEIGHTS_LOADER = "safetensors"  # ctx.weights loads with it: readable in the child, preloaded when there are weights


def resolve_device(wanted: str, cuda: bool) -> str:
    """What ctx.device will say: "cuda" when the package asks for it (or for "any") and this host has it."""
    if wanted not in DEVICES:
        raise CodecFailure(f"codec package: device {wanted!r} is not one of {', '.join(DEVICES)}")
    if wanted == "cuda" and not cuda:
        raise CodecFailure(
            'codec package: its codec.json asks for device "cuda" and this host has no CUDA device '
            '(/dev/nvidiactl); run it on a GPU host, or declare "device": "any" if it also runs on the CPU'
        )
    return "cuda" if wanted != "cpu" and cuda else "cpu"


class PackageCodec(CustomCodec):
    name = "package"
    summary = "a codec package (modules and weights), run in the sandbox"

    def __init__(
        self,
        params: CodecParams,
        root: Path,
        entry: str,
        weights: Mapping[str, str],
        device: str,
        implementation: str,
        allow_imports: Sequence[str] = (),
        trusted: bool = False,
        limits: SandboxLimits | None = None,
        policy: SandboxPolicy | None = None,
        recorded: PackageConditions | None = None,
    ) -> None:
        """`weights`: each weights file's name and its checked sha256; `recorded`: the unpacked package's name,
        version and hashes, for the result's conditions."""
        Codec.__init__(self, params)  # not CustomCodec's: there is no inline source to load
        self.code = ""
        self.root = root.resolve()
        allowed = allowed_imports(allow_imports)
        self._sandbox(check_package(self.root, allowed), allowed | {WEIGHTS_LOADER}, trusted, limits, policy)
        if weights:
            self.preload = sorted({*self.preload, "torch", f"{WEIGHTS_LOADER}.torch"})
        device = resolve_device(device, has_cuda())
        self.package = PackageRequest(str(self.root), entry, dict(sorted(weights.items())), device)
        self.implementation = implementation
        self.recorded = recorded

    @property
    def device(self) -> str:  # type: ignore[override]  # where the package runs, not the worker's class default
        return self.package.device

    def _job(self, role: str, header: StreamHeader, payload: bytes | bytearray, max_output: int) -> ChildJob:
        public = PublicHeader(header.width, header.height, header.frames, str(header.fps))
        return ChildJob(
            role=role, code="", header=public, payload=payload, max_output_bytes=max_output,
            params=self.params if role == "encode" else {}, allowed_imports=self.allowed, preload=self.preload,
            hidden=self.hidden, readable=[self.root], package=self.package,
        )  # fmt: skip

    def conditions(self) -> CodecConditions:
        conditions = super().conditions()
        conditions["implementation"] = self.implementation
        conditions["bitstream_format"] = "the bytes the package's encode() returned, as they are"
        conditions["device"] = self.package.device
        if self.recorded is not None:
            conditions["package"] = self.recorded
        return conditions
