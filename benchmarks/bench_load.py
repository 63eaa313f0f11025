"""Concurrent load through `codeclab serve`'s HTTP API: N 1-frame experiments POSTed at once, timed to final.

Wall time runs from the first POST to the last experiment seen final through GET /experiments/{id};
an experiment's time to final runs from its own POST. Polling every POLL_S adds up to that much to each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench_summary import RUN_ID_ENV, write_stamped
from rich.table import Table

from codeclab.experiments.statuses import Status
from codeclab.local.client import call_api
from codeclab.local.service import LocalService
from codeclab.terminal import wide_console

FRAMES, CODEC, QUALITY = 1, "jpeg", 50
POLL_S = 0.25
DEADLINE_S = 600


def load_spec(n: int) -> dict[str, Any]:
    return {
        "name": f"load-{n}",
        "source": {"clip": "builtin:carphone", "frames": FRAMES},
        "codec": {"name": CODEC, "params": {"quality": QUALITY}},
        "metrics": {"vmaf": False},
    }


def post(base: str, n: int) -> tuple[str, float]:
    """The new experiment's id and when its POST was sent."""
    sent = time.perf_counter()
    status, body = call_api(f"{base}/experiments", "POST", json.dumps(load_spec(n)).encode())
    if status != 202:
        raise RuntimeError(f"POST {n} answered {status}: {body}")
    return body["experiment_id"], sent


def final_status(base: str, experiment_id: str) -> str | None:
    status, body = call_api(f"{base}/experiments/{experiment_id}")
    if status == 404:
        return None  # the workflow's first step has not created the record yet
    if status != 200:
        raise RuntimeError(f"GET {experiment_id} answered {status}: {body}")
    return body["status"] if Status(body["status"]).is_final else None


def wait_all(base: str, ids: list[str]) -> dict[str, tuple[str, float]]:
    """Each id's final status and when it was first seen final."""
    ended: dict[str, tuple[str, float]] = {}
    deadline = time.monotonic() + DEADLINE_S
    while len(ended) < len(ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(ids) - len(ended)} experiments not final after {DEADLINE_S} s")
        for experiment_id in set(ids) - ended.keys():
            if status := final_status(base, experiment_id):
                ended[experiment_id] = (status, time.perf_counter())
        time.sleep(POLL_S)
    return ended


def measure(service: LocalService, count: int) -> dict[str, Any]:
    with ThreadPoolExecutor(max_workers=count) as pool:
        posted = list(pool.map(lambda n: post(service.url, n), range(count)))
    ended = wait_all(service.url, [experiment_id for experiment_id, _ in posted])
    first_post = min(sent for _, sent in posted)
    to_final = [ended[experiment_id][1] - sent for experiment_id, sent in posted]
    wall = max(at for _, at in ended.values()) - first_post
    statuses = [status for status, _ in ended.values()]
    return {
        "experiments": count,
        "succeeded": statuses.count(Status.SUCCEEDED),
        "wall_s": wall,
        "experiments_per_minute": count / wall * 60,
        "median_to_final_s": statistics.median(to_final),
        "max_to_final_s": max(to_final),
        "conditions": {
            "cores": os.cpu_count(),
            "frames_per_job": FRAMES,
            "codec": f"{CODEC} q{QUALITY}",
            "poll_s": POLL_S,
        },
    }


def show(figures: dict[str, Any]) -> None:
    conditions = figures["conditions"]
    title = (
        f"{figures['experiments']} experiments POSTed at once to codeclab serve "
        f"({conditions['cores']} cores, {conditions['frames_per_job']} frame each, {conditions['codec']})"
    )
    table = Table(title=title)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("experiments (succeeded)", f"{figures['experiments']} ({figures['succeeded']})")
    table.add_row("wall time, first POST to last final (s)", f"{figures['wall_s']:.1f}")
    table.add_row("experiments per minute", f"{figures['experiments_per_minute']:.1f}")
    table.add_row("median time to final per experiment (s)", f"{figures['median_to_final_s']:.1f}")
    table.add_row("max time to final per experiment (s)", f"{figures['max_to_final_s']:.1f}")
    wide_console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog=f"${RUN_ID_ENV} sets the run id in the JSON (make bench sets one for all benches).",
    )
    parser.add_argument("--count", type=int, default=20, help="experiments to POST at once (default 20)")
    args = parser.parse_args()
    if args.count < 1:
        parser.error("--count must be at least 1")
    with tempfile.TemporaryDirectory() as runs, LocalService(Path(runs), port=0) as service:
        measured = measure(service, args.count)
    show(measured)
    wide_console().print(f"wrote {write_stamped('bench_load', measured)}")


if __name__ == "__main__":
    main()
