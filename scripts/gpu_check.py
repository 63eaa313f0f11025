"""`make gpu-check`: a codec package run on CUDA in the sandbox, one stream decoded again on the CPU, bytes compared.

Usage: python scripts/gpu_check.py [PACKAGE_FOLDER]   (default: scripts/gpu_check_package)

It refuses (exit 2) on a host without a CUDA device. Otherwise it encodes and decodes a clip with the
package on the GPU, with every sandbox layer required, decodes the same bitstream in a CPU-only child,
and exits 1 unless both reconstructions are byte-identical. It prints fps of each step.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

from codeclab.worker.codecs.base import StreamHeader
from codeclab.worker.codecs.custom import has_cuda
from codeclab.worker.codecs.package import PackageCodec
from codeclab.worker.video import Video, write_y4m

DEFAULT_PACKAGE = Path(__file__).parent / "gpu_check_package"
FRAMES, HEIGHT, WIDTH = 16, 256, 256


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else DEFAULT_PACKAGE
    if not has_cuda():
        print("gpu-check needs a CUDA device and this host has none (/dev/nvidiactl is absent); run it on a GPU host")
        return 2
    # The manifest's owner is codeclab/worker/packages (the package format); until it is merged, read the fields
    # the sandbox needs straight from codec.json.
    manifest = json.loads((root / "codec.json").read_text())
    work = Path("/tmp/codeclab-gpu-check")
    work.mkdir(exist_ok=True)
    reference = work / "reference.y4m"
    write_y4m(_clip(), reference)
    header = StreamHeader(WIDTH, HEIGHT, FRAMES, Fraction(25))

    def codec(device: str) -> PackageCodec:
        made = PackageCodec({}, root, manifest["entry"], list(manifest["weights"]), device, f"gpu-check {root}")
        made.protect_source([reference])
        return made

    gpu, cpu = codec("cuda"), codec("cpu")
    bitstream = work / "bitstream.bin"
    encode_s = _timed(lambda: gpu.encode(reference, bitstream, lambda _: None))
    decoded: dict[str, Video] = {}
    decode_gpu_s = _timed(lambda: decoded.update(cuda=gpu.decode(bitstream, header, lambda _: None)))
    decode_cpu_s = _timed(lambda: decoded.update(cpu=cpu.decode(bitstream, header, lambda _: None)))
    print(f"package {manifest.get('name')} {manifest.get('version')}, {FRAMES} frames of {WIDTH}x{HEIGHT}")
    print(f"  encode on cuda: {FRAMES / encode_s:.1f} fps (sandbox start-up included)")
    print(f"  decode on cuda: {FRAMES / decode_gpu_s:.1f} fps; on cpu: {FRAMES / decode_cpu_s:.1f} fps")
    print(f"  sandbox layers (encoder): {sorted(gpu.applied['encoder'].layers)}")
    same = all(
        np.array_equal(getattr(decoded["cuda"], plane), getattr(decoded["cpu"], plane)) for plane in ("y", "u", "v")
    )
    print("  the CUDA and CPU reconstructions are " + ("byte-identical" if same else "DIFFERENT"))
    return 0 if same else 1


def _clip() -> Video:
    """A moving gradient with texture: deterministic, and not trivially compressible."""
    rng = np.random.default_rng(0)
    ramp = np.add.outer(np.arange(HEIGHT), np.arange(WIDTH)).astype(np.int64)
    y = np.stack([(ramp + 3 * i) % 256 for i in range(FRAMES)]).astype(np.uint8)
    y ^= rng.integers(0, 8, y.shape, dtype=np.uint8)
    u = y[:, ::2, ::2].copy()
    v = (255 - u).astype(np.uint8)
    return Video(y, u, v, Fraction(25))


def _timed(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
