"""What a research-scale test-set evaluation costs on AWS Batch, from the worker's measured per-frame time.

Run by `make bench`. The worker runs each anchor codec on builtin:bbb at 1280x720 as shipped (the
largest clip we have; the spec refuses upscaling) with threads=1 and VMAF on, as a test set's point
would. Its own result.json timings give seconds per frame for the whole job (decode the source,
encode, decode, metrics). The paper figures scale that by pixel count to 1080p and multiply out
the scenario below. Each job holds one g6.xlarge (the job definition asks for one GPU), so
instance-hours are the sum of the jobs' hours, plus start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_summary import write_stamped
from rich.console import Console
from rich.table import Table

CLIP = {"clip": "builtin:bbb", "frames": 30}  # 1280x720 as shipped
CODECS = (
    ("x264", {"crf": 28, "preset": "medium"}),
    ("x265", {"crf": 28, "preset": "medium"}),
    ("svtav1", {"crf": 35, "preset": 8}),
    ("vp9", {"crf": 35, "cpu_used": 2}),
)
PIXELS_720P, PIXELS_1080P = 1280 * 720, 1920 * 1080
# The scenario researchers ask about: JVET-style classes at 1080p.
SEQUENCES, FRAMES, RATES = 15, 600, 5
# us-east-1 Linux list price of g6.xlarge (1 L4 GPU, 4 vCPU, 16 GiB), checked 2026-11; Spot moves with demand.
# The Spot figure is an assumption (about 60% off), to be read from the Spot price history before a real run.
ON_DEMAND_PER_HOUR = 0.8048
SPOT_PER_HOUR = 0.33
JOB_START_S = 30  # a container start and the worker's imports on a warm instance (assumed, not measured here)
INSTANCE_START_S = 300  # booting a GPU instance and pulling the image, once per instance (assumed)
PINNED = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=20, help="GPU instances Batch may run at once (maxVcpus/4)")
    args = parser.parse_args()
    console = Console()
    measured = {name: seconds_per_frame(name, params, console) for name, params in CODECS}
    paper = estimate(measured, args.instances)
    show(console, measured, paper)
    out = write_stamped("bench_cost", {"conditions": conditions(args.instances), "measured": measured, **paper})
    console.print(f"wrote {out}")


def seconds_per_frame(codec: str, params: dict[str, object], console: Console) -> dict[str, float]:
    spec = {
        "name": f"cost-{codec}",
        "source": CLIP,
        "codec": {"name": codec, "params": {**params, "threads": 1}},
        "metrics": {"vmaf": True},
    }
    with tempfile.TemporaryDirectory(prefix="codeclab-cost-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        with console.status(f"{codec}: the worker on {CLIP['frames']} frames of 1280x720"):
            command = [sys.executable, "-m", "codeclab.worker", str(spec_path), "--out", str(Path(tmp) / "out")]
            subprocess.run(command, check=True, capture_output=True, env={**os.environ, **PINNED})
        result = json.loads((Path(tmp) / "out" / "result.json").read_text())
    timings, frames = result["timings"], result["frames"]
    return {"per_frame_s": timings["total_s"] / frames, "total_s": timings["total_s"], "frames": frames}


def estimate(measured: dict[str, dict[str, float]], instances: int) -> dict[str, object]:
    """Instance-hours, cost and wall time of the scenario, per codec and in all."""
    scale = PIXELS_1080P / PIXELS_720P
    per_codec = {}
    for codec, figures in measured.items():
        job_s = FRAMES * figures["per_frame_s"] * scale + JOB_START_S
        per_codec[codec] = {"job_minutes": job_s / 60, "instance_hours": SEQUENCES * RATES * job_s / 3600}
    jobs = SEQUENCES * RATES * len(measured)
    hours = sum(c["instance_hours"] for c in per_codec.values()) + instances * INSTANCE_START_S / 3600
    longest_job_h = max(c["job_minutes"] for c in per_codec.values()) / 60
    wall_h = max(hours / instances, longest_job_h)  # enough jobs to keep every instance busy, bar the tail
    return {
        "per_codec": per_codec,
        "jobs": jobs,
        "instance_hours": hours,
        "cost_on_demand_usd": hours * ON_DEMAND_PER_HOUR,
        "cost_spot_usd": hours * SPOT_PER_HOUR,
        "wall_hours": wall_h,
    }


def conditions(instances: int) -> dict[str, object]:
    return {
        "measured_on": f"{CLIP['clip']} 1280x720, {CLIP['frames']} frames, threads=1, VMAF on, result.json total_s",
        "scenario": f"{SEQUENCES} sequences x {FRAMES} frames at 1920x1080 x {RATES} rates x {len(CODECS)} codecs",
        "scaling": "seconds per frame x (1920*1080)/(1280*720)",
        "instances": instances,
        "prices_usd_per_hour": {"g6.xlarge on-demand": ON_DEMAND_PER_HOUR, "g6.xlarge spot (assumed)": SPOT_PER_HOUR},
        "job_start_s": JOB_START_S,
        "instance_start_s": INSTANCE_START_S,
    }


def show(console: Console, measured: dict[str, dict[str, float]], paper: dict[str, object]) -> None:
    table = Table(title="Per-frame worker time (measured) and one 1080p 600-frame job (on paper)")
    for column in ("codec", "s/frame at 720p", "job at 1080p (min)", "instance-hours"):
        table.add_column(column, justify="right" if column != "codec" else "left")
    per_codec = paper["per_codec"]
    assert isinstance(per_codec, dict)
    for codec, figures in measured.items():
        job = per_codec[codec]
        table.add_row(
            codec, f"{figures['per_frame_s']:.3f}", f"{job['job_minutes']:.1f}", f"{job['instance_hours']:.1f}"
        )
    console.print(table)
    console.print(
        f"{paper['jobs']} jobs: {paper['instance_hours']:.0f} instance-hours, "
        f"${paper['cost_on_demand_usd']:.0f} on-demand or ${paper['cost_spot_usd']:.0f} on Spot, "
        f"about {paper['wall_hours']:.1f} h of wall time"
    )


if __name__ == "__main__":
    main()
