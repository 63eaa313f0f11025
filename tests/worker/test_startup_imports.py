"""The worker's start-up imports only what its job uses (issue 18): each heavy module costs every job 0.05-1 s.

The worker runs an x264 spec on a y4m clip in a fresh process, to a local folder, and reports which heavy
modules were loaded by the end. The control imports each of them in the same kind of process, so the test
sees them when they are there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Heavy, and unused by an x264 job on a local clip with a local output: S3 (boto3 and botocore, about 0.25 s),
# PyAV (mp4 sources), the learned codec's torch and scipy.special, OpenCV's image codecs' callers, the emulator,
# and scipy.linalg (0.4 s), which numba would load only to look for a BLAS the SSIM kernel does not use.
# (numba itself imports scipy's top-level package, 8 ms, to check its version.)
UNNEEDED = ("boto3", "botocore", "av", "torch", "scipy.special", "scipy.linalg", "moto", "requests")
PROBE = """\
import json, sys
from codeclab.worker.entrypoint import main
code = main(sys.argv[1:-1])
print(json.dumps({"exit": code, "loaded": sorted(m for m in sys.argv[-1].split(",") if m in sys.modules)}))
"""


def _loaded_after(args: list[str], modules: tuple[str, ...], preload: str = "") -> dict[str, object]:
    probe = PROBE.replace("import json, sys\n", f"import json, sys\n{preload}\n")
    proc = subprocess.run([sys.executable, "-c", probe, *args, ",".join(modules)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    answer: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return answer


def _x264_spec(tmp_path: Path, clip: Path) -> Path:
    spec = {"name": "imports", "source": {"clip": str(clip), "frames": 1}, "codec": {"name": "x264"},
            "metrics": {"vmaf": False}}  # fmt: skip
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def _args(tmp_path: Path, carphone_y4m: Path) -> list[str]:
    # the probe reads the modules to look for from its last argument: argparse must not see it
    return [str(_x264_spec(tmp_path, carphone_y4m)), "--out", str(tmp_path / "out"), "--quiet"]


def test_an_x264_job_loads_no_heavy_module_it_does_not_use(tmp_path: Path, carphone_y4m: Path) -> None:
    answer = _loaded_after(_args(tmp_path, carphone_y4m), UNNEEDED)
    assert answer["exit"] == 0
    assert answer["loaded"] == [], f"the worker's start-up imported {answer['loaded']}: import them where used"
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["status"] == "SUCCEEDED"


@pytest.mark.parametrize("module", UNNEEDED)
def test_control_the_probe_sees_a_module_that_was_loaded(tmp_path: Path, module: str) -> None:
    # a spec that is not there: the worker exits 2 at once, after the same start-up
    args = [str(tmp_path / "absent.json"), "--out", str(tmp_path / "out"), "--quiet"]
    answer = _loaded_after(args, UNNEEDED, preload=f"import {module}")
    assert answer["exit"] == 2
    assert module in answer["loaded"]  # type: ignore[operator]
