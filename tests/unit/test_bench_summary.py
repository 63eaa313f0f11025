"""The bench summary's reading, stale-run refusal and formatting, and the cold-import measurement.

Tiny fake result files stand in for a bench run; the cold-import checks import a trivial module
in a child process and assert on structure, never on how long anything took.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

# The benchmarks are scripts, not a package: they import each other from their own folder.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_cold_import
import bench_summary

RUN = "20260101T000000Z"


def stamp(run_id: str) -> dict[str, Any]:
    machine = {"cpu_model": "Test CPU", "cores": 2, "python": "3.11.7", "platform": "Linux"}
    return {"run_id": run_id, "written_at": "2026-01-01T00:00:00+00:00", "commit": "abc1234", "machine": machine}


def fake_results() -> dict[str, dict[str, Any]]:
    """The fields bench_summary reads from each bench's JSON, with round numbers."""
    spec = {"source": {"frames": 1}, "codec": {"name": "jpeg"}}
    anchor = {
        "frames": 32,
        "codec": "x264",
        "asked_params": {"crf": 28},
        "encode_fps": 355.2,
        "decode_fps": 903.0,
        "conditions": {"implementation": "libx264 in ffmpeg n9 | test"},
    }
    learned_points = [
        {"params": {"quality": q, "threads": 2}, "encode_fps": 50.0 + q, "decode_fps": 80.0} for q in (1, 2, 3, 4)
    ]
    return {
        "bench_workflow": {
            "conditions": {"spec": spec, "runs": 5},
            "median": {"overhead_beyond_job_s": 0.4021, "overhead_beyond_worker_s": 1.078},
        },
        "bench_sweep": {
            "conditions": {"concurrency": 4, "target_s": 0.5},
            "sweeps": [{"points": 24, "overhead_per_point_s": 0.2113}, {"points": 300, "overhead_per_point_s": 0.25}],
        },
        "bench_worker": {
            "conditions": {"repetitions": 3, "ffmpeg": "n9.0.2", "ffmpeg_start_ms": 16.0},
            "metric_throughput_720p": {
                "clip": "builtin:bbb 1280x720, 30 frames, no scaling",
                "distortion": "x264 {'crf': 35}, 1000 bytes, decoded",
                "fps": {"ours_psnr_ssim": 20.0, "ours_measure_quality": 16.0, "ffmpeg_psnr_ssim": 400.0},
                "agreement": {"ours_psnr_y_of_mean_mse": 34.8856, "ffmpeg_psnr_y": 34.8856},
            },
            "anchors": [
                {**anchor, "clip": "carphone 176x144"},
                {**anchor, "clip": "bbb 448x256", "encode_fps": 185.0, "decode_fps": 618.0},
            ],
        },
        "bench_rd": {
            "conditions": {"torch": "2.13.0+cpu"},
            "clips": {
                "bbb 448x256": {"size": [448, 256], "frames": 32, "points": {"learned": learned_points}},
                "carphone 176x144": {"size": [176, 144], "frames": 120, "points": {"learned": learned_points}},
            },
            "targets": [
                {
                    "clip": "bbb 448x256",
                    "target": "BD-rate against x264 all-intra",
                    "anchor": "x264 all-intra",
                    "bd_rate_psnr_yuv": -12.5,
                    "psnr_overlap": "28.0-33.0",
                    "met": True,
                },
                {
                    "clip": "bbb 448x256",
                    "target": "top quality >= 34 dB PSNR-YUV",
                    "anchor": "",
                    "bd_rate_psnr_yuv": 33.1,
                    "psnr_overlap": "",
                    "met": False,
                },
            ],
            "learned_720p": {
                "size": [1280, 720],
                "source": {"frames": 8},
                "rows": {"q1": {"encode_fps": 5.0, "decode_fps": 8.0}, "q4": {"encode_fps": 4.0, "decode_fps": 7.0}},
            },
        },
        "bench_cold_import": {
            "conditions": {"repeats": 5},
            "modules": [
                {
                    "module": "create_record",
                    "import_ms_median": 336.4,
                    "import_ms_min": 331.0,
                    "import_ms_max": 342.0,
                    "process_ms_median": 480.0,
                    "heaviest_packages_ms": {"module body": 127.0, "botocore": 31.0, "urllib3": 15.0, "json": 11.0},
                }
            ],
        },
        "bench_load": {
            "experiments": 20,
            "succeeded": 20,
            "wall_s": 42.7,
            "experiments_per_minute": 28.1,
            "median_to_final_s": 41.7,
            "conditions": {"cores": 2, "frames_per_job": 1, "codec": "jpeg q50"},
        },
        "bench_sandbox": {
            "conditions": {"repeats": 5},
            "startup": {"numpy": {"sandboxed_s": 0.2, "plain_process_s": 0.1, "ratio": 2.0}},
            "pid_channel": {"bits": 12, "tries": 10, "exact": 10},
        },
        "bench_cost": {
            "conditions": {
                "measured_on": "builtin:bbb 1280x720",
                "scenario": "15 sequences",
                "scaling": "x 2.25",
                "instances": 20,
                "prices_usd_per_hour": {"g6.xlarge on-demand": 0.8},
            },
            "measured": {"x264": {"per_frame_s": 0.25}},
            "instance_hours": 40.0,
            "cost_on_demand_usd": 32.0,
            "cost_spot_usd": 13.0,
            "wall_hours": 2.0,
        },
        "bench_metrics": {
            "conditions": {
                "clip": "builtin:bbb 1280x720, 60 frames",
                "distortion": "x264 {'crf': 35, 'threads': 1}, decoded",
                "pairs": 5,
            },
            "figures": {
                "ratio_ffmpeg_over_ours": 0.25,
                "ratios": [0.2, 0.25, 0.3],
                "ours_fps": 50.0,
                "ffmpeg_fps": 200.0,
                "page_faults_per_frame": 30.0,
            },
        },
        "bench_memory": {
            "conditions": {"frames": [16, 132], "repeats": 2, "vmaf": "off"},
            "measured": {
                "x264 1280x720": {
                    "short": {"worker_mb": 150.0, "children_mb": 90.0},
                    "long": {"worker_mb": 165.0, "children_mb": 95.0},
                    "ratio": {"worker_mb": 1.1},
                    "ratio_range": [1.05, 1.15],
                }
            },
        },
        "bench_learned": {
            "quality": 4,
            "frames": 32,
            "size": [448, 256],
            "repetitions": [{}, {}, {}],
            "median": {
                "video_encode_fps": 20.0,
                "video_decode_fps": 40.0,
                "all-intra_encode_fps": 50.0,
                "all-intra_decode_fps": 80.0,
            },
            "ratios": {
                "encode_x264_over_video": 10.0,
                "decode_x264_over_video": 10.0,
                "encode_x264_over_all-intra": 4.0,
                "decode_x264_over_all-intra": 5.0,
            },
            "cuda": None,
            "conditions": {"threads": "learned: torch threads 2"},
        },
        "bench_overhead": {
            "conditions": {
                "spec": {"codec": {"name": "x264"}},
                "repeats": 5,
                "raw_frames": {
                    "spec": {
                        "source": {"clip": "builtin:bbb", "frames": 120},
                        "codec": {"name": "x264", "params": {"crf": 35, "preset": "ultrafast"}},
                    },
                    "repeats": 3,
                },
            },
            "raw_frames": {
                "kept_s_median": 9.0,
                "lean_s_median": 4.5,
                "ratio_median": 2.0,
                "ratio_min": 1.75,
                "ratio_max": 2.25,
                "kept_mb_median": 317.5,
                "lean_mb_median": 0.5,
            },
            "ratio_median": 2.5,
            "ratio_min": 2.25,
            "ratio_max": 2.75,
            "ratio_joined_median": 1.75,
            "ratio_joined_min": 1.5,
            "ratio_joined_max": 2.0,
            "run_s_median": 2.5,
            "joined_s_median": 1.75,
            "worker_s_median": 1.0,
            "breakdown_median_s": {
                "cli_imports_s": 0.5,
                "emulator_imports_s": 0.75,
                "deploy_s": 0.5,
                "execution_s": 1.5,
                "job_s": 1.25,
                "worker_s": 1.0,
            },
        },
    }


def write_run(directory: Path, run_id: str = RUN, stamps: dict[str, str] | None = None) -> None:
    """One file per bench; `stamps` gives some benches another run id ("" for no stamp at all)."""
    for name, data in fake_results().items():
        wanted = (stamps or {}).get(name, run_id)
        payload = data if wanted == "" else {"run": stamp(wanted), **data}
        (directory / f"{name}.json").write_text(json.dumps(payload))


# --- reading and refusing --------------------------------------------------------------


def test_reads_one_run(tmp_path: Path):
    write_run(tmp_path)
    results = bench_summary.read_results(tmp_path, RUN)
    assert set(results) == set(bench_summary.BENCHES)
    assert bench_summary.read_results(tmp_path, None) == results  # no id asked: the one all files share


def test_refuses_a_file_from_an_older_run(tmp_path: Path):
    write_run(tmp_path, stamps={"bench_rd": "20250101T000000Z"})
    with pytest.raises(bench_summary.StaleResults, match=r"bench_rd\.json: from run 20250101T000000Z"):
        bench_summary.read_results(tmp_path, RUN)


def test_refuses_mixed_runs_when_no_run_id_is_given(tmp_path: Path):
    write_run(tmp_path, stamps={"bench_load": "other"})
    with pytest.raises(bench_summary.StaleResults, match="different runs"):
        bench_summary.read_results(tmp_path, None)


def test_refuses_unstamped_and_missing_files(tmp_path: Path):
    write_run(tmp_path, stamps={"bench_worker": ""})
    (tmp_path / "bench_load.json").unlink()
    with pytest.raises(bench_summary.StaleResults) as caught:
        bench_summary.read_results(tmp_path, RUN)
    assert "bench_worker.json: no run stamp" in str(caught.value)
    assert "bench_load.json: missing" in str(caught.value)


def test_main_exits_1_on_stale_files_and_writes_nothing(tmp_path: Path):
    write_run(tmp_path, stamps={"bench_workflow": "old"})
    assert bench_summary.main(["--results", str(tmp_path), "--run-id", RUN]) == 1
    assert not (tmp_path / "summary.md").exists()


# --- formatting --------------------------------------------------------------------------


def test_rows_carry_each_bench_figure(tmp_path: Path):
    write_run(tmp_path)
    rows = {row.figure: row for row in bench_summary.summary_rows(bench_summary.read_results(tmp_path, RUN))}
    assert rows["Workflow overhead per execution (beyond the Batch job)"].value == "0.402 s"
    assert rows["Sweep overhead per point (24 points)"].value == "0.211 s"
    assert rows["Sweep overhead per point (300 points)"].value == "0.250 s"
    metric = rows["Metric throughput: ours, PSNR Y,U,V + SSIM-Y"]
    assert metric.value == "20.0 frames/s (0.050x ffmpeg)"
    assert "distorted by x264 crf=35;" in metric.how
    assert rows["Encode / decode fps: x264 crf=28"].value == "176x144: 355 / 903 · 448x256: 185 / 618"
    learned = rows["Encode / decode fps: learned (bench_rd)"]
    assert learned.value == "176x144: 52.5 / 80.0 · 448x256: 52.5 / 80.0 · 1280x720: 4.50 / 7.50"
    assert "2 threads" in learned.how
    cold = rows["Cold import: create_record"]
    assert cold.value == "336 ms"
    assert "module body 127, botocore 31, urllib3 15" in cold.how
    assert rows["Concurrent load: experiments per minute"].value == "28.1 /min"
    speed = rows["Metrics against ffmpeg: ffmpeg psnr+ssim s / our PSNR+SSIM+MS-SSIM s"]
    assert speed.value == "0.250"
    assert "spread 0.200-0.300" in speed.how and "distorted by x264 crf=35 threads=1" in speed.how
    assert rows["Metrics: page faults per frame (ours)"].value == "30"
    memory = rows["Peak memory, 16 against 132 frames: x264 1280x720"]
    assert memory.value == "worker 150 / 165 MiB (1.10x); largest ffmpeg child 90 / 95 MiB"
    assert "worker ratio 1.05-1.15" in memory.how
    overhead = rows["Local overhead: 1-frame `codeclab run` / worker alone"]
    assert overhead.value == "2.50x"
    assert "median of 5 ratios (2.25-2.75" in overhead.how and "beyond the worker's own time 0.25 s" in overhead.how
    joined = rows["Local overhead: 1-frame `codeclab run` joining a serve / worker alone"]
    assert joined.value == "1.75x" and "(1.50-2.00; 1.75 s)" in joined.how
    raw = rows["Raw frames: a 720p `codeclab run` keeping them / keeping neither"]
    assert raw.value == "9.00 s against 4.50 s (2.00x)"
    assert "120 frames of builtin:bbb (x264 crf=35 preset=ultrafast)" in raw.how
    assert "median of 3 ratios (1.75-2.25); runs/ 317.5 MB against 0.5 MB" in raw.how


def test_main_writes_a_markdown_table(tmp_path: Path):
    write_run(tmp_path)
    out = tmp_path / "table.md"
    assert bench_summary.main(["--results", str(tmp_path), "--run-id", RUN, "--markdown", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert RUN in lines[0] and "Test CPU, 2 cores" in lines[0]
    assert lines[2] == "| figure | value | conditions / how measured |"
    table = [line for line in lines if line.startswith("| ")]
    # header, workflow, sweep, metrics, x264, learned, learned targets, cold, load, sandbox, cost, metrics speed,
    # memory, learned speed, overhead (with the raw frames)
    assert len(table) == 1 + 2 + 2 + 3 + 1 + 1 + 2 + 1 + 1 + 2 + 2 + 2 + 1 + 2 + 3
    text = out.read_text()
    assert "| Learned codec fps (encode, decode), video | 20.0, 40.0 (x264 all-intra 10.0x, 10.0x as fast) |" in text
    assert "| Learned codec on bbb 448x256: BD-rate against x264 all-intra | -12.5% | PSNR-YUV, PCHIP" in text
    assert "| Learned codec on bbb 448x256: top quality >= 34 dB PSNR-YUV | 33.10 dB | NOT met |" in text
    assert "ffmpeg n9 \\| test" in out.read_text()  # a | inside a cell must not split it


def test_run_stamp_takes_the_run_id_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(bench_summary.RUN_ID_ENV, "make-run")
    assert bench_summary.run_stamp()["run_id"] == "make-run"
    monkeypatch.delenv(bench_summary.RUN_ID_ENV)
    assert bench_summary.run_stamp()["run_id"].endswith(f"-{os.getpid()}")  # a lone run gets its own


# --- cold import ---------------------------------------------------------------------


def child_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def test_time_import_of_a_trivial_module(tmp_path: Path):
    (tmp_path / "tiny_handler.py").write_text("import colorsys\nVALUE = 1\n")
    timing = bench_cold_import.time_import("tiny_handler", [tmp_path], child_env())
    assert timing.import_s > 0
    assert timing.process_s > timing.import_s  # the process also starts the interpreter


def test_import_profile_of_a_trivial_module(tmp_path: Path):
    (tmp_path / "tiny_handler.py").write_text("import colorsys\nVALUE = 1\n")
    profile = bench_cold_import.import_profile("tiny_handler", [tmp_path], child_env())
    assert set(profile) == {bench_cold_import.MODULE_BODY, "colorsys"}


def test_a_failing_import_raises_with_its_error(tmp_path: Path):
    (tmp_path / "broken_handler.py").write_text("raise KeyError('TABLE_NAME')\n")
    with pytest.raises(bench_cold_import.ColdImportError, match="TABLE_NAME"):
        bench_cold_import.time_import("broken_handler", [tmp_path], child_env())


def test_parse_importtime_keeps_only_the_module_subtree():
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       900 |        900 | site",  # interpreter start-up: not the handler's
            "import time:       100 |        100 |     botocore.utils",
            "import time:       200 |        300 |   botocore",
            "import time:        50 |         50 |   json",
            "import time:      1500 |       1850 | handler",
        ]
    )
    assert bench_cold_import.parse_importtime(stderr, "handler") == {"module body": 1.5, "botocore": 0.3, "json": 0.05}
