"""`make demo`: three real experiments on carphone through the worker, then one table.

x264, x264 all-intra and JPEG, each a separate `python -m codeclab.worker` process,
exactly as the Batch job runs it.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
DEMO_SPECS = ("x264.json", "x264-intra.json", "jpeg.json")
_PROGRESS = re.compile(r"progress: (\w+) (\d+)/(\d+) frames")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codeclab.demo", description=__doc__)
    parser.add_argument("--runs-dir", type=Path, default=REPO / "runs", help="where run folders go")
    args = parser.parse_args(argv)
    console = Console()
    console.width = max(console.width, 132)  # CI logs and pipes default to 80 columns
    batch = args.runs_dir / time.strftime("demo-%Y%m%d-%H%M%S")
    results = []
    with Progress(
        TextColumn("{task.description:<40}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        for name in DEMO_SPECS:
            results.append(_run_one(REPO / "examples" / name, batch / Path(name).stem, bar))
    failed = [r for r in results if r["status"] != "SUCCEEDED"]
    for result in failed:
        console.print(f"[red]{result['name']} failed: {result['error']['type']}: {result['error']['message']}")
    succeeded = [r for r in results if r["status"] == "SUCCEEDED"]
    if succeeded:
        console.print(_table(succeeded))
        console.print(_conditions_line(succeeded[0]))
        console.print("Artifacts (result.json, metrics.csv, bitstream, recon.y4m, reference.y4m, worker.log):")
        for result in succeeded:
            console.print(f"  {result['name']}: {Path(result['artifacts']['result.json']).parent}")
    return 1 if failed else 0


def _run_one(spec: Path, out: Path, bar: Progress) -> dict[str, Any]:
    task = bar.add_task(spec.stem, total=None)
    cmd = [sys.executable, "-m", "codeclab.worker", str(spec), "--out", str(out)]
    with subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            if match := _PROGRESS.search(line):
                stage, done, total = match.group(1), int(match.group(2)), int(match.group(3))
                bar.update(task, description=f"{spec.stem}: {stage}", completed=done, total=total or None)
    bar.update(task, description=f"{spec.stem}: done" if proc.returncode == 0 else f"{spec.stem}: FAILED")
    return json.loads((out / "result.json").read_text())


def _table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="codeclab demo: carphone 176x144, 32 frames")
    for column in (
        "codec",
        "params",
        "bytes",
        "bpp",
        "kbps",
        "PSNR-YUV",
        "SSIM",
        "VMAF",
        "enc fps",
        "dec fps",
    ):
        table.add_column(column, justify="left" if column in {"codec", "params"} else "right", no_wrap=True)
    for r in results:
        m, codec = r["metrics"], r["spec"]["codec"]
        params = " ".join(f"{k}={v}" for k, v in codec["params"].items() if k != "threads")
        vmaf = "-" if m["vmaf"] is None else f"{m['vmaf']:.2f}"
        table.add_row(
            codec["name"], params, str(r["bitstream"]["bytes"]), f"{m['bpp']:.4f}", f"{m['kbps']:.1f}",
            f"{m['psnr_yuv']:.2f}", f"{m['ssim']:.4f}", vmaf, f"{m['encode_fps']:.0f}", f"{m['decode_fps']:.0f}",
        )  # fmt: skip
    return table


def _conditions_line(result: dict[str, Any]) -> str:
    src = result["conditions"]["source"]
    ffmpeg = result["environment"]["ffmpeg"]["ffmpeg"]
    return (
        f"Conditions: {src['clip']} frames {src['start']}..{src['start'] + src['frames'] - 1}, "
        f"{src['size'][0]}x{src['size'][1]} yuv420p at {src['fps']} fps; PSNR-YUV = (6Y+U+V)/8; "
        f"SSIM = Gaussian (Wang 2004) on Y; ffmpeg {ffmpeg}; 1 encoder thread"
    )


if __name__ == "__main__":
    sys.exit(main())
