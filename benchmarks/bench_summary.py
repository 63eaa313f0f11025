"""One side-by-side table of the figures that one `make bench` run measured.

Every bench writes benchmarks/results/<bench>.json with a "run" stamp (run id, time, commit,
machine) from run_stamp() below. `make bench` gives all of them one run id through the
CODECLAB_BENCH_RUN_ID variable. This script reads the six files, refuses any that another
run wrote (or that has no stamp), prints one table (figure | value | how measured) and
writes benchmarks/results/summary.md, a markdown table to paste into the README.
"""

from __future__ import annotations

import argparse
import ast
import os
import platform
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
RUN_ID_ENV = "CODECLAB_BENCH_RUN_ID"
# The order of the summary's sections, and the file each one reads (<name>.json).
BENCHES = (
    "bench_workflow",
    "bench_sweep",
    "bench_worker",
    "bench_rd",
    "bench_cold_import",
    "bench_load",
    "bench_sandbox",
    "bench_cost",
    "bench_metrics",
    "bench_memory",
    "bench_learned",
    "bench_overhead",
)
# Between the per-clip parts of one value; the terminal table breaks the line there instead.
PART_SEPARATOR = " · "


# --- the stamp every bench writes next to its figures -----------------------------------


def new_run_id() -> str:
    """A run id for a bench started alone: its own, so the summary never mixes it with another run."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"


def current_run_id() -> str:
    return os.environ.get(RUN_ID_ENV) or new_run_id()


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "unknown"


def usable_cores() -> int:
    # The affinity mask, not os.cpu_count(): a container may see more cores than it may use.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def git_commit() -> str:
    """The short commit, with -dirty when tracked files differ from it (the figures then describe neither)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def run_stamp() -> dict[str, Any]:
    """What every bench's JSON carries under "run": which run wrote it, when, from which code, on what."""
    return {
        "run_id": current_run_id(),
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": {
            "cpu_model": cpu_model(),
            "cores": usable_cores(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }


def write_stamped(name: str, measured: dict[str, Any]) -> Path:
    """A bench's figures, stamped now (so the summary's time range covers the measuring), as results/<name>.json."""
    import json

    out = RESULTS_DIR / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"run": run_stamp(), **measured}, indent=2) + "\n")
    return out


# --- reading one run's files ------------------------------------------------------------


class StaleResults(Exception):
    """Some result files are missing, unstamped, or from another run than the one asked for."""


def _load(path: Path) -> dict[str, Any]:
    import json  # only the reader needs it; the benches import this module for run_stamp()

    return json.loads(path.read_text(encoding="utf-8"))


def read_results(directory: Path, run_id: str | None) -> dict[str, dict[str, Any]]:
    """Every bench's figures, all from run `run_id`, or, when it is None, all from one run.

    Raises StaleResults naming each file that does not belong, so a half-finished run never
    gets summarized next to figures an older run left behind.
    """
    found: dict[str, dict[str, Any]] = {}
    problems = []
    for name in BENCHES:
        path = directory / f"{name}.json"
        if not path.exists():
            problems.append(f"{path}: missing")
            continue
        data = _load(path)
        if not isinstance(data.get("run"), dict) or "run_id" not in data["run"]:
            problems.append(f"{path}: no run stamp (written by an older version of {name}.py)")
            continue
        found[name] = data
    expected = run_id or _only_run(found)
    for name, data in found.items():
        stamp = data["run"]
        if expected is not None and stamp["run_id"] != expected:
            problems.append(
                f"{directory / name}.json: from run {stamp['run_id']} (written {stamp.get('written_at', '?')}), "
                f"not run {expected}"
            )
    if expected is None and found:
        runs = ", ".join(f"{name}: {data['run']['run_id']}" for name, data in found.items())
        problems.append(f"the files come from different runs ({runs}); pass --run-id or rerun `make bench`")
    if problems:
        raise StaleResults("\n".join(problems))
    return found


def _only_run(found: dict[str, dict[str, Any]]) -> str | None:
    """The run id all files share, or None when they disagree."""
    ids = {data["run"]["run_id"] for data in found.values()}
    return ids.pop() if len(ids) == 1 else None


# --- one row per figure -----------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    section: str
    figure: str
    value: str
    how: str


def fmt_rate(value: float) -> str:
    """Three significant figures or so: the runs vary by more than that anyway."""
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def workflow_rows(data: dict[str, Any]) -> list[Row]:
    median, cond = data["median"], data["conditions"]
    spec = cond["spec"]
    what = (
        f"median of {cond['runs']} {spec['source']['frames']}-frame {spec['codec']['name']} experiments "
        "through the local Step Functions workflow on moto, StartExecution to the final record in runs/"
    )
    return [
        Row(
            "workflow",
            "Workflow overhead per execution (beyond the Batch job)",
            f"{median['overhead_beyond_job_s']:.3f} s",
            f"{what}, minus the Batch job's wall time (worker process included)",
        ),
        Row(
            "workflow",
            "Workflow overhead per execution (beyond the worker's own time)",
            f"{median['overhead_beyond_worker_s']:.3f} s",
            "same runs, minus only result.json total_s: worker start-up and imports count as overhead",
        ),
    ]


def sweep_rows(data: dict[str, Any]) -> list[Row]:
    cond = data["conditions"]
    how = (
        f"(wall x concurrency {cond['concurrency']} - the points' summed Batch job wall) / points, one sweep of "
        f"1-frame x264 points through the local Distributed Map; target < {cond['target_s']} s"
    )
    return [
        Row(
            "workflow",
            f"Sweep overhead per point ({sweep['points']} points)",
            f"{sweep['overhead_per_point_s']:.3f} s",
            how,
        )
        for sweep in data["sweeps"]
    ]


def distortion_label(text: str) -> str:
    """bench_worker's "x264 {'crf': 35, 'threads': 1}, 80318 bytes, decoded" -> "x264 crf=35 threads=1"."""
    match = re.match(r"(\S+) (\{.*?\})", text)
    if not match:
        return text
    params = ast.literal_eval(match.group(2))  # the dict's repr, as bench_worker formats it
    return " ".join([match.group(1), *(f"{k}={v}" for k, v in params.items())])


def metric_rows(data: dict[str, Any]) -> list[Row]:
    result, cond = data["metric_throughput_720p"], data["conditions"]
    fps, agree = result["fps"], result["agreement"]
    ff = fps["ffmpeg_psnr_ssim"]
    distortion = distortion_label(result["distortion"])
    shared = f"{result['clip']}, distorted by {distortion}; 1 thread; median of {cond['repetitions']}"

    def ours(key: str) -> str:
        return f"{fmt_rate(fps[key])} frames/s ({fps[key] / ff:.3f}x ffmpeg)"

    return [
        Row("metrics", "Metric throughput: ours, PSNR Y,U,V + SSIM-Y", ours("ours_psnr_ssim"), f"{shared}; in memory"),
        Row(
            "metrics",
            "Metric throughput: ours, PSNR + SSIM + MS-SSIM (measure_quality)",
            ours("ours_measure_quality"),
            f"{shared}; in memory",
        ),
        Row(
            "metrics",
            "Metric throughput: ffmpeg psnr + ssim filters",
            f"{fmt_rate(ff)} frames/s",
            f"whole ffmpeg {cond['ffmpeg']} process incl. y4m decode ({cond['ffmpeg_start_ms']} ms start), "
            f"-threads 1; clip PSNR-Y ours {agree['ours_psnr_y_of_mean_mse']:.4f} dB, "
            f"ffmpeg {agree['ffmpeg_psnr_y']:.4f} dB; VMAF not measured",
        ),
    ]


def _size(clip_label: str) -> str:
    """'carphone 176x144' -> '176x144'."""
    return clip_label.split()[-1]


def _enc_dec(size: str, encode_fps: float, decode_fps: float) -> str:
    return f"{size}: {fmt_rate(encode_fps)} / {fmt_rate(decode_fps)}"


def anchor_rows(data: dict[str, Any]) -> list[Row]:
    by_codec: dict[str, list[dict[str, Any]]] = {}
    for row in data["anchors"]:
        by_codec.setdefault(row["codec"], []).append(row)
    reps = data["conditions"]["repetitions"]
    rows = []
    for codec, runs in by_codec.items():
        params = _param_text(runs[0]["asked_params"])
        value = PART_SEPARATOR.join(_enc_dec(_size(r["clip"]), r["encode_fps"], r["decode_fps"]) for r in runs)
        frames = "/".join(sorted({str(r["frames"]) for r in runs}))
        how = f"{runs[0]['conditions']['implementation']}; {frames} frames per clip; threads=1; median of {reps}"
        rows.append(Row("codecs", f"Encode / decode fps: {codec} {params}", value, how))
    return rows


def learned_rows(data: dict[str, Any]) -> list[Row]:
    """The learned codec's fps: median over its rate points on each eval clip, and at 720p."""
    clips = sorted(data["clips"].items(), key=lambda item: item[1]["size"][0])  # smallest first, as the anchors
    parts, frames = [], []
    for label, clip in clips:
        points = clip["points"]["learned"]
        encode = statistics.median(p["encode_fps"] for p in points)
        parts.append(_enc_dec(_size(label), encode, statistics.median(p["decode_fps"] for p in points)))
        frames.append(f"{label.split()[0]} {clip['frames']}")
    speed = data["learned_720p"]
    size, fast = f"{speed['size'][0]}x{speed['size'][1]}", speed["rows"].values()
    parts.append(
        _enc_dec(
            size, statistics.median(r["encode_fps"] for r in fast), statistics.median(r["decode_fps"] for r in fast)
        )
    )
    first = clips[0][1]["points"]["learned"]
    qualities = ",".join(str(p["params"]["quality"]) for p in first)
    how = (
        f"CPU, torch {data['conditions']['torch']}, {first[0]['params']['threads']} threads (the anchors use 1); "
        f"model loading excluded; median over qualities {qualities} on the eval clips ({', '.join(frames)} frames), "
        f"over {'/'.join(speed['rows'])} on bbb {size} ({speed['source']['frames']} frames)"
    )
    return [Row("codecs", "Encode / decode fps: learned (bench_rd)", PART_SEPARATOR.join(parts), how)]


def cold_import_rows(data: dict[str, Any]) -> list[Row]:
    cond = data["conditions"]
    rows = []
    for module in data["modules"]:
        heavy = ", ".join(f"{name} {ms:.0f}" for name, ms in list(module["heaviest_packages_ms"].items())[:3])
        how = (
            f"median of {cond['repeats']} fresh processes, {module['import_ms_min']:.0f}-{module['import_ms_max']:.0f}"
            f" ms; whole process {module['process_ms_median']:.0f} ms; heaviest (self ms): {heavy}"
        )
        rows.append(Row("cold import", f"Cold import: {module['module']}", f"{module['import_ms_median']:.0f} ms", how))
    return rows


def load_rows(data: dict[str, Any]) -> list[Row]:
    cond = data["conditions"]
    how = (
        f"{data['experiments']} {cond['frames_per_job']}-frame {cond['codec']} experiments POSTed at once to "
        f"codeclab serve, {data['succeeded']}/{data['experiments']} succeeded; {data['wall_s']:.1f} s first POST to "
        f"last final, median {data['median_to_final_s']:.1f} s to final; {cond['cores']} cores"
    )
    return [Row("load", "Concurrent load: experiments per minute", f"{data['experiments_per_minute']:.1f} /min", how)]


def sandbox_rows(data: dict[str, Any]) -> list[Row]:
    rows = [
        Row(
            "sandbox",
            f"Sandboxed codec child start-up: {module} preloaded",
            f"{row['sandboxed_s']:.3f} s ({row['ratio']:.2f}x)",
            f"a no-op custom codec under every layer, each checked in /proc, against a plain "
            f"`python -c 'import {module}'` ({row['plain_process_s']:.3f} s) in the same run; "
            f"median of {data['conditions']['repeats']}",
        )
        for module, row in data["startup"].items()
    ]
    pid = data["pid_channel"]
    rows.append(
        Row(
            "sandbox",
            "Covert channel left open: the pid counter",
            f"{pid['bits']} bits, {pid['exact']}/{pid['tries']} exact",
            "the encoder starts threads until the next pid is a value it chose; the decoder reads its own pid "
            "(closing it needs a pid namespace per child, which Docker's default profile forbids)",
        )
    )
    return rows


def cost_rows(data: dict[str, Any]) -> list[Row]:
    cond = data["conditions"]
    per_frame = PART_SEPARATOR.join(f"{codec}: {m['per_frame_s']:.3f} s" for codec, m in data["measured"].items())
    prices = cond["prices_usd_per_hour"]
    return [
        Row("cost", "Worker time per frame, 1280x720", per_frame, cond["measured_on"]),
        Row(
            "cost",
            "A test-set evaluation on AWS Batch (on paper)",
            f"{data['instance_hours']:.0f} instance-hours, ${data['cost_on_demand_usd']:.0f} on-demand, "
            f"${data['cost_spot_usd']:.0f} Spot, {data['wall_hours']:.1f} h",
            f"{cond['scenario']}; {cond['scaling']}; {cond['instances']} instances; prices {prices}",
        ),
    ]


def metrics_speed_rows(data: dict[str, Any]) -> list[Row]:
    cond, figures = data["conditions"], data["figures"]
    spread = f"{min(figures['ratios']):.3f}-{max(figures['ratios']):.3f}"
    shared = f"{cond['clip']}, distorted by {distortion_label(cond['distortion'])}"
    return [
        Row(
            "metrics",
            "Metrics against ffmpeg: ffmpeg psnr+ssim s / our PSNR+SSIM+MS-SSIM s",
            f"{figures['ratio_ffmpeg_over_ours']:.3f}",
            f"{shared}; median of {cond['pairs']} alternated pairs (spread {spread}); ours "
            f"{fmt_rate(figures['ours_fps'])} frames/s in memory, ffmpeg {fmt_rate(figures['ffmpeg_fps'])} frames/s "
            "(whole process, default threads); both sides at their default threading",
        ),
        Row(
            "metrics",
            "Metrics: page faults per frame (ours)",
            f"{figures['page_faults_per_frame']:.0f}",
            f"{shared}; getrusage minor + major faults around measure_quality, per frame, median of the pairs",
        ),
    ]


def memory_rows(data: dict[str, Any]) -> list[Row]:
    cond = data["conditions"]
    short, long = cond["frames"]
    rows = []
    for case, m in data["measured"].items():
        low, high = m["ratio_range"]
        short_mb, long_mb = m["short"], m["long"]
        value = (
            f"worker {short_mb['worker_mb']:.0f} / {long_mb['worker_mb']:.0f} MiB ({m['ratio']['worker_mb']:.2f}x); "
            f"largest ffmpeg child {short_mb['children_mb']:.0f} / {long_mb['children_mb']:.0f} MiB"
        )
        how = (
            f"peak RSS at {short} / {long} frames, each process's own as result.json records it; median over "
            f"{cond['repeats']} alternating pairs (worker ratio {low:.2f}-{high:.2f}); VMAF {cond['vmaf']}"
        )
        rows.append(Row("memory", f"Peak memory, {short} against {long} frames: {case}", value, how))
    return rows


def learned_speed_rows(data: dict[str, Any]) -> list[Row]:
    """bench_learned: the learned codec's CPU fps, with P-frames and all-intra, against x264 all-intra."""
    median, ratio, cond = data["median"], data["ratios"], data["conditions"]
    size = "x".join(map(str, data["size"]))
    how = (
        f"q{data['quality']}, BBB {size} frames 0-{data['frames'] - 1}, CPU, {cond['threads']}; median of "
        f"{len(data['repetitions'])} side-by-side repetitions; model loading excluded"
    )
    rows = [
        Row(
            "learned",
            f"Learned codec fps (encode, decode), {side}",
            f"{median[f'{side}_encode_fps']:.1f}, {median[f'{side}_decode_fps']:.1f} "
            f"(x264 all-intra {ratio[f'encode_x264_over_{side}']:.1f}x, {ratio[f'decode_x264_over_{side}']:.1f}x "
            "as fast)",
            how,
        )
        for side in ("video", "all-intra")
    ]
    if data.get("cuda"):
        cuda = data["cuda"]
        rows.append(Row("learned", "Learned codec fps on CUDA (encode, decode)",
                        f"{cuda['encode_fps']:.1f}, {cuda['decode_fps']:.1f}", how))  # fmt: skip
    return rows


def learned_target_rows(data: dict[str, Any]) -> list[Row]:
    """bench_rd's targets for the learned codec (issue 19), each with its figure and whether it is met."""
    rows = []
    for target in data.get("targets", []):
        value = target["bd_rate_psnr_yuv"]
        if target["target"].startswith("top"):
            figure = f"{value:.2f} dB"
        else:
            figure = f"{value:+.1f}%" if isinstance(value, float) else "n/a"
        met = {True: "met", False: "NOT met", None: "no target"}[target["met"]]
        how = f"PSNR-YUV, PCHIP; overlap {target['psnr_overlap']} dB; {met}" if target["psnr_overlap"] else met
        rows.append(Row("learned", f"Learned codec on {target['clip']}: {target['target']}", figure, how))
    return rows


def overhead_rows(data: dict[str, Any]) -> list[Row]:
    parts = data["breakdown_median_s"]
    beyond_worker = parts["job_s"] - parts["worker_s"]
    how = (
        f"`codeclab run` of a 1-frame {data['conditions']['spec']['codec']['name']} experiment against "
        f"`python -m codeclab.worker` on the same spec, fresh processes, alternated, median of "
        f"{data['conditions']['repeats']} ratios ({data['ratio_min']:.2f}-{data['ratio_max']:.2f}; "
        f"{data['run_s_median']:.2f} s against {data['worker_s_median']:.2f} s); breakdown: CLI imports "
        f"{parts['cli_imports_s']:.2f} s, emulator imports {parts['emulator_imports_s']:.2f} s, deploy "
        f"{parts['deploy_s']:.2f} s, execution {parts['execution_s']:.2f} s, of which the job's start beyond the "
        f"worker's own time {beyond_worker:.2f} s; target <= 3x"
    )
    figure = "Local overhead: 1-frame `codeclab run` / worker alone"
    joined = (
        f"`codeclab run` joining a `codeclab serve` already running on its runs folder, same spec and repeats "
        f"({data['ratio_joined_min']:.2f}-{data['ratio_joined_max']:.2f}; {data['joined_s_median']:.2f} s); "
        "target <= 3x"
    )
    return [
        Row("overhead", figure, f"{data['ratio_median']:.2f}x", how),
        Row("overhead", "Local overhead: 1-frame `codeclab run` joining a serve / worker alone",
            f"{data['ratio_joined_median']:.2f}x", joined),
        raw_frames_row(data),
    ]  # fmt: skip


def _param_text(params: dict[str, Any]) -> str:
    """Codec parameters as the table names them: `crf=35 preset=ultrafast`."""
    return " ".join(f"{key}={value}" for key, value in params.items())


def raw_frames_row(data: dict[str, Any]) -> Row:
    raw, conditions = data["raw_frames"], data["conditions"]["raw_frames"]
    source, codec = conditions["spec"]["source"], conditions["spec"]["codec"]
    value = f"{raw['kept_s_median']:.2f} s against {raw['lean_s_median']:.2f} s ({raw['ratio_median']:.2f}x)"
    how = (
        f"`codeclab run --own-stack` of {source['frames']} frames of {source['clip']} ({codec['name']} "
        f"{_param_text(codec['params'])}) keeping reference.y4m and recon.y4m, against the same spec with "
        f"artifacts.reference and .recon false; alternated, median of {conditions['repeats']} ratios "
        f"({raw['ratio_min']:.2f}-{raw['ratio_max']:.2f}); runs/ {raw['kept_mb_median']:.1f} MB against "
        f"{raw['lean_mb_median']:.1f} MB"
    )
    return Row("overhead", "Raw frames: a 720p `codeclab run` keeping them / keeping neither", value, how)


def summary_rows(results: dict[str, dict[str, Any]]) -> list[Row]:
    return [
        *workflow_rows(results["bench_workflow"]),
        *sweep_rows(results["bench_sweep"]),
        *metric_rows(results["bench_worker"]),
        *anchor_rows(results["bench_worker"]),
        *learned_rows(results["bench_rd"]),
        *learned_target_rows(results["bench_rd"]),
        *cold_import_rows(results["bench_cold_import"]),
        *load_rows(results["bench_load"]),
        *sandbox_rows(results["bench_sandbox"]),
        *cost_rows(results["bench_cost"]),
        *metrics_speed_rows(results["bench_metrics"]),
        *memory_rows(results["bench_memory"]),
        *learned_speed_rows(results["bench_learned"]),
        *overhead_rows(results["bench_overhead"]),
    ]


def header_line(results: dict[str, dict[str, Any]]) -> str:
    stamps = [data["run"] for data in results.values()]
    machine = stamps[0]["machine"]
    times = sorted(stamp["written_at"] for stamp in stamps)
    ffmpeg = results["bench_worker"]["conditions"]["ffmpeg"]
    return (
        f"run {stamps[0]['run_id']} ({times[0]} to {times[-1]}), commit {stamps[0]['commit']}; "
        f"{machine['cpu_model']}, {machine['cores']} cores usable; Python {machine['python']}; ffmpeg {ffmpeg}"
    )


# --- output -----------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(rows: list[Row], header: str) -> str:
    lines = [
        f"Figures from one `make bench` run: {header}.",
        "",
        "| figure | value | conditions / how measured |",
        "|---|---:|---|",
    ]
    lines += [f"| {_cell(r.figure)} | {_cell(r.value)} | {_cell(r.how)} |" for r in rows]
    return "\n".join(lines) + "\n"


def rich_table(rows: list[Row], header: str) -> Table:
    table = Table(title="codeclab benchmarks: one run, side by side", caption=header)
    table.add_column("figure")
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("conditions / how measured")
    for index, row in enumerate(rows):
        if index and row.section != rows[index - 1].section:
            table.add_section()
        table.add_row(row.figure, row.value.replace(PART_SEPARATOR, "\n"), row.how)
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run-id",
        default=os.environ.get(RUN_ID_ENV),
        help=f"the run whose files to summarize (default ${RUN_ID_ENV}; unset: the one run all files share)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help=f"where the JSON files are ({RESULTS_DIR})")
    parser.add_argument("--markdown", type=Path, help="where to write the markdown table (<results>/summary.md)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    console.width = max(console.width, 170)  # piped (make bench | tee): rich assumes 80
    try:
        results = read_results(args.results, args.run_id)
    except StaleResults as exc:
        console.print("[bold red]bench_summary: not summarizing; every figure must come from one run (make bench):[/]")
        console.print(str(exc), markup=False)
        return 1
    rows, header = summary_rows(results), header_line(results)
    console.print(rich_table(rows, header))
    out = args.markdown or args.results / "summary.md"
    out.write_text(markdown(rows, header), encoding="utf-8")
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
