"""`make gpu-check`: the learned codec and a codec package on CUDA, one stream decoded again on the CPU.

Usage: python scripts/gpu_check.py [--package FOLDER] [--rehearse-on-cpu]

On a host with a CUDA device it codes 8 frames of BBB at 448x256 (evaluation frames, shipped offline; with
the default intra period, an I-frame and 7 P-frames):
1. the built-in `learned` codec (its default quality) on CUDA, in the worker: encode and decode fps;
2. the package (default: examples/codecs/learnedvideo, the same codec exported as a package) on CUDA inside
   the sandbox, every layer required: encode and decode fps, and whether its bitstream is the learned
   codec's, byte for byte (for the default package);
3. the package's bitstream decoded again in a CPU-only sandboxed child, compared with the CUDA decode.
The latents, vectors and tables are exact on any device, so the CPU decode always decodes; its pixels are the
CUDA decode's only where both synthesise the same float32 sums, and a P-chain carries any last-level
difference forward. It prints which it is, and exits 1 if the CPU decode fails or drifts below 40 dB PSNR
from the CUDA decode, 2 on a host without CUDA. `--rehearse-on-cpu` runs the same steps with every device
set to the CPU (there the decodes must be identical), so the script can be exercised where there is no GPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from codeclab.experiments.schema import SourceSpec
from codeclab.worker.codecs import StreamHeader, make_codec
from codeclab.worker.codecs.base import Codec
from codeclab.worker.codecs.custom import has_cuda
from codeclab.worker.codecs.learned.export import EXTRA_IMPORTS
from codeclab.worker.codecs.package import PackageCodec
from codeclab.worker.packages.manifest import resolve_params
from codeclab.worker.packages.unpack import unpack
from codeclab.worker.sources import load_reference
from codeclab.worker.video import Video

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PACKAGE = REPO / "examples" / "codecs" / "learnedvideo"
DRIFT_FLOOR_DB = 40.0  # a CPU decode of a device stream further from the device decode than this fails
CLIP: SourceSpec = {"clip": "builtin:bbb", "start": 0, "frames": 8, "size": [448, 256]}


def main(argv: list[str]) -> int:
    args = _arguments(argv)
    if not args.rehearse_on_cpu and not has_cuda():
        print("gpu-check needs a CUDA device and this host has none (/dev/nvidiactl is absent); run it on a GPU")
        print("host, or pass --rehearse-on-cpu to run the same steps on the CPU")
        return 2
    device = "cpu" if args.rehearse_on_cpu else "cuda"
    with tempfile.TemporaryDirectory(prefix="codeclab-gpu-check-") as folder:
        work = Path(folder)
        reference = load_reference(CLIP, work, work / "reference.y4m").video
        header = StreamHeader(reference.width, reference.height, reference.frames, reference.fps)
        print(f"{reference.frames} frames of BBB {reference.width}x{reference.height}, on {device}")
        learned = make_codec("learned", {"device": "cuda" if device == "cuda" else "cpu"})
        learned_stream, _ = _round_trip("learned (worker)", learned, work, header, "learned.cln")
        gpu, cpu = _package(args.package, device, work), _package(args.package, "cpu", work)
        stream, on_device = _round_trip(f"package {gpu.implementation} (sandbox)", gpu, work, header, "package.bin")
        print(f"  sandbox layers applied: {sorted(gpu.applied['encoder'].layers)}")
        if args.package == DEFAULT_PACKAGE:
            print(f"  its bitstream is the learned codec's: {stream.read_bytes() == learned_stream.read_bytes()}")
        on_cpu = _timed_decode("package, decoded again on cpu", cpu, stream, header)
    return _compare(on_device, on_cpu)


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--package", type=Path, default=DEFAULT_PACKAGE, help="a codec package folder")
    parser.add_argument("--rehearse-on-cpu", action="store_true", help="run every step on the CPU")
    return parser.parse_args(argv)


def _package(folder: Path, device: str, work: Path) -> PackageCodec:
    """The package as the worker runs it, on `device`, with the two libraries the exported codec imports."""
    package = unpack(str(folder), work / "cache")
    manifest = package.manifest
    codec = PackageCodec(
        resolve_params(manifest, {}), package.root, manifest.entry, manifest.weights, device,
        f"{manifest.name} {manifest.version}", EXTRA_IMPORTS, recorded=package.conditions(),
    )  # fmt: skip
    codec.protect_source([work / "reference.y4m", work])
    return codec


def _round_trip(label: str, codec: Codec, work: Path, header: StreamHeader, name: str) -> tuple[Path, Video]:
    stream = work / name
    seconds = _timed(lambda: codec.encode(work / "reference.y4m", stream, lambda _: None))
    print(f"{label}: encode {header.frames / seconds:.1f} fps ({stream.stat().st_size} bytes)")
    return stream, _timed_decode(f"{label}: decode", codec, stream, header)


def _timed_decode(label: str, codec: Codec, stream: Path, header: StreamHeader) -> Video:
    decoded: list[Video] = []
    seconds = _timed(lambda: decoded.append(codec.decode(stream, header, lambda _: None)))
    print(f"{label} {header.frames / seconds:.1f} fps (start-up and model loading included)")
    return decoded[0]


def _compare(on_device: Video, on_cpu: Video) -> int:
    planes = [(getattr(on_device, p).astype(np.int64), getattr(on_cpu, p).astype(np.int64)) for p in ("y", "u", "v")]
    differing = sum(int(np.count_nonzero(a != b)) for a, b in planes)
    if differing == 0:
        print("the CPU decode is byte-identical to the device's")
        return 0
    total = sum(a.size for a, _ in planes)
    squared = sum(float(((a - b) ** 2).sum()) for a, b in planes)
    psnr = 10 * np.log10(255**2 * total / squared)
    largest = max(int(np.abs(a - b).max()) for a, b in planes)
    print(f"the CPU decode differs from the device's in {differing} of {total} samples (at most {largest} levels, ")
    print(f"PSNR {psnr:.2f} dB between the two): float32 sums differ across devices, and P-frames carry it forward")
    return 0 if psnr >= DRIFT_FLOOR_DB else 1


def _timed(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
