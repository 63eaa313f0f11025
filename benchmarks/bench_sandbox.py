"""What the custom-codec sandbox costs, and the one covert channel it leaves open, measured side by side.

- Start-up: a no-op codec child under every layer (numpy, then torch, preloaded) against the floor, a
  plain `python -c "import numpy"` (or torch) process, in the same run.
- A real custom codec: examples/custom_codec/dct_codec.py on carphone through the worker.
- The pid counter: the encoder starts threads until the kernel's next pid is a value it chose modulo
  2^bits; the decoder reads its own pid. How many of the bits arrive exactly, over several tries.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_summary import RUN_ID_ENV, write_stamped
from rich.table import Table

from codeclab.terminal import wide_console
from codeclab.worker.sandbox import landlock
from codeclab.worker.sandbox.layers import SandboxLimits, SandboxPolicy
from codeclab.worker.sandbox.protocol import PublicHeader
from codeclab.worker.sandbox.runner import ChildJob, run_child
from codeclab.worker.sandbox.static_check import allowed_imports

REPO = Path(__file__).resolve().parents[1]
NO_OP = "def encode(frames, params):\n    return b'x'\ndef decode(bitstream, header):\n    return None\n"
PID_ENCODER = """import typing
threading = typing.sys.modules['importlib'].import_module('threading')
def encode(frames, params):
    while True:
        thread = threading.Thread(target=lambda: None)
        thread.start()
        thread.join()
        if (thread.native_id + params['offset']) % params['modulus'] == params['value']:
            return b'x'
def decode(bitstream, header):
    return None
"""
PID_DECODER = """import typing
os = typing.sys.modules['os']
def encode(frames, params):
    return os.getpid().to_bytes(4, 'big')
def decode(bitstream, header):
    return None
"""


def child(code: str, preload: list[str], params: dict[str, Any] | None = None) -> bytes:
    job = ChildJob(role="encode", code=code, header=PublicHeader(2, 2, 1, "1"), payload=bytes(6),
                   max_output_bytes=64, params=params or {}, allowed_imports=sorted(allowed_imports()),
                   preload=preload)  # fmt: skip
    return run_child(job, SandboxLimits(wall_seconds=120), SandboxPolicy()).output


def timed(action: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def startup(repeats: int) -> dict[str, dict[str, float]]:
    child(NO_OP, ["numpy"])  # the allowed packages' read set is computed once per worker: not in the figure
    rows = {}
    for module in ("numpy", "torch"):
        sandboxed = timed(lambda m=module: child(NO_OP, [m]), repeats)
        plain = timed(lambda m=module: subprocess.run([sys.executable, "-c", f"import {m}"], check=True), repeats)
        rows[module] = {"sandboxed_s": sandboxed, "plain_process_s": plain, "ratio": sandboxed / plain}
    return rows


def dct_codec() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        worker = [sys.executable, "-m", "codeclab.worker", "examples/custom.json", "--out", out, "--no-vmaf", "--quiet"]
        subprocess.run(worker, cwd=REPO, check=True)
        result = json.loads((Path(out) / "result.json").read_text())
    timings, metrics = result["timings"], result["metrics"]
    return {"frames": result["frames"], "encode_s": timings["encode_s"], "decode_s": timings["decode_s"],
            "total_s": timings["total_s"], "psnr_yuv": metrics["psnr_yuv"], "bpp": metrics["bpp"]}  # fmt: skip


def pid_channel(bits: int, tries: int) -> dict[str, Any]:
    """Calibrate the fixed offset between the encoder's last thread and the next child's pid, then send values."""
    modulus = 1 << bits
    calibration = int.from_bytes(child(PID_DECODER, ["numpy"]), "big")
    child(PID_ENCODER, ["numpy"], {"offset": 0, "modulus": modulus, "value": (calibration + 1000) % modulus})
    offset = (int.from_bytes(child(PID_DECODER, ["numpy"]), "big") - (calibration + 1000)) % modulus
    exact = 0
    for _ in range(tries):
        value = random.randrange(modulus)
        child(PID_ENCODER, ["numpy"], {"offset": offset, "modulus": modulus, "value": value})
        exact += int.from_bytes(child(PID_DECODER, ["numpy"]), "big") % modulus == value
    return {"bits": bits, "tries": tries, "exact": exact, "offset": offset}


def show(figures: dict[str, Any]) -> None:
    table = Table(title=f"custom-codec sandbox ({figures['conditions']['host']})")
    for column in ("what", "value", "how"):
        table.add_column(column)
    for module, row in figures["startup"].items():
        table.add_row(
            f"no-op child, {module} preloaded",
            f"{row['sandboxed_s']:.3f} s ({row['ratio']:.2f}x)",
            f"every layer, checked in /proc; vs a plain `python -c 'import {module}'`: {row['plain_process_s']:.3f} s",
        )
    dct = figures["dct_codec"]
    table.add_row(
        "dct_codec.py through the worker",
        f"encode {dct['encode_s']:.2f} s, decode {dct['decode_s']:.2f} s",
        f"carphone {dct['frames']} frames, examples/custom.json: PSNR-YUV {dct['psnr_yuv']:.2f} dB at "
        f"{dct['bpp']:.3f} bpp",
    )
    pid = figures["pid_channel"]
    table.add_row(
        "pid-counter covert channel",
        f"{pid['exact']}/{pid['tries']} exact",
        f"{pid['bits']} bits chosen by the encoder, read by the next child from its own pid",
    )
    wide_console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=f"${RUN_ID_ENV} sets the run id in the JSON.")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=5, help="runs per start-up figure (median; default 5)")
    parser.add_argument("--tries", type=int, default=10, help="values sent through the pid counter (default 10)")
    args = parser.parse_args()
    measured = {
        "conditions": {
            "host": f"Landlock ABI {landlock.abi_version()}, {args.repeats} runs each (median)",
            "repeats": args.repeats,
        },
        "startup": startup(args.repeats),
        "dct_codec": dct_codec(),
        "pid_channel": pid_channel(12, args.tries),
    }
    show(measured)
    wide_console().print(f"wrote {write_stamped('bench_sandbox', measured)}")


if __name__ == "__main__":
    main()
