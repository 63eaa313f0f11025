"""Check that the report's HTML page renders in a real browser: `make check-html`.

Builds a report from a small synthetic runs/ folder (two curves of four points), opens its
rd.html in headless Chromium and reads the DOM after the page's script ran: #status must
say `rendered 2 curves in 1 panels; 5 sortable tables`. Needs Debian's chromium (`apt-get install
chromium`), which is too heavy for CI, so this is a separate target; without it the script says
so and exits 2.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from codeclab.report.report import build_report, write_report

CHROMIUM = "chromium"
EXPECTED = "rendered 2 curves in 1 panels; 5 sortable tables"
CURVES = {  # codec -> (params without the rate knob, rate knob, [(bpp, PSNR-YUV), ...])
    "x264": ({"preset": "medium"}, "crf", [(0.05, 32.0), (0.10, 35.0), (0.20, 38.0), (0.40, 41.0)]),
    "jpeg": ({}, "quality", [(0.30, 31.0), (0.60, 34.0), (1.20, 37.0), (2.40, 40.0)]),
}
SOURCE = {
    "clip": "builtin:carphone", "sha256": "1c4add78" * 8, "start": 0, "frames": 32, "crop": None, "size": [176, 144],
    "scaling": "none", "fps": "30000/1001", "pix_fmt": "yuv420p", "colour_handling": "source yuv420p planes as decoded",
}  # fmt: skip


def result(codec: str, params: dict, bpp: float, psnr: float) -> dict:
    metrics = {
        "psnr_yuv": psnr, "ms_ssim": 1 - 10 ** (-psnr / 20), "vmaf": None, "bpp": bpp, "kbps": bpp * 760,
        "encode_fps": 400.0, "decode_fps": 900.0,
    }  # fmt: skip
    return {
        "status": "SUCCEEDED",
        "name": f"{codec}-{bpp}",
        "spec": {"codec": {"name": codec, "params": params}},
        "bitstream": {"file": "bitstream", "bytes": round(bpp * 176 * 144 * 32 / 8)},
        "frames": 32,
        "timings": {"total_s": 0.5},
        "resources": {"device": "cpu"},
        "conditions": {
            "source": SOURCE,
            "codec": {"codec": codec, "implementation": f"synthetic {codec}", "params": params},
            "metrics": {name: f"synthetic {name}" for name in ("psnr", "psnr_yuv", "ssim", "ms_ssim")},
            "rate": "bpp = 8*bytes/(width*height*frames)",
        },
        "metrics": metrics,
        "environment": {"ffmpeg": {"ffmpeg": "n9.0.2"}, "packages": {"numpy": "2.4.6"}},
    }


def write_runs(runs: Path) -> list[str]:
    ids = []
    for codec, (params, knob, points) in CURVES.items():
        for index, (bpp, psnr) in enumerate(points):
            experiment_id = f"exp_{codec}{index}"
            folder = runs / experiment_id
            folder.mkdir(parents=True)
            data = result(codec, {**params, knob: 20 + index}, bpp, psnr)
            (folder / "result.json").write_text(json.dumps(data))
            record = {"experiment_id": experiment_id, "status": "SUCCEEDED", "spec": data["spec"]}
            (folder / "record.json").write_text(json.dumps(record))
            ids.append(experiment_id)
    return ids


def rendered_status(page: Path) -> str:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.resolve().as_uri()]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        sys.exit(f"check-html: chromium exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    found = re.search(r'<div id="status">(.*?)</div>', proc.stdout)
    return found.group(1) if found else "(no #status element in the rendered DOM)"


def main() -> None:
    if shutil.which(CHROMIUM) is None:
        print(
            f"check-html: `{CHROMIUM}` is not on PATH. Install Debian's headless-capable Chromium with\n"
            f"    sudo apt-get install chromium\nthen run `make check-html` again.",
            file=sys.stderr,
        )
        sys.exit(2)
    with tempfile.TemporaryDirectory() as scratch:
        runs = Path(scratch) / "runs"
        ids = write_runs(runs)
        report = build_report(ids, runs, "psnr_yuv", None, allow_mismatch=False)
        page = write_report(report, Path(scratch) / "report")["rd.html"]
        status = rendered_status(page)
    if status != EXPECTED:
        sys.exit(f"check-html: FAILED: #status says {status!r}, expected {EXPECTED!r}; the page's script did not run")
    print(f"check-html: OK: headless chromium ran the page's script ({status})")


if __name__ == "__main__":
    main()
