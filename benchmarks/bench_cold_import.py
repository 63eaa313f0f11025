"""The Lambda handlers' cold import time: each module in lambdas/ imported in a fresh Python process.

A Lambda cold start imports the handler module before the first invocation; everything it
imports at module scope (boto3 and its clients, Powertools, the X-Ray SDK, codeclab's core)
is paid there. Each module is imported in --repeats fresh processes after one untimed
warm-up (so .pyc files exist and the files sit in the page cache, as on a warm host disk).
The environment is the function's own variables from the synthesized template plus the
variables the Lambda runtime sets (region, placeholder credentials, LAMBDA_TASK_ROOT, so that
Powertools' Tracer patches as it does on AWS); nothing reaches the network. One more run
with `python -X importtime` gives the heaviest packages (self time summed per top-level package).
Prints a rich table and writes benchmarks/results/bench_cold_import.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_summary import RUN_ID_ENV, run_stamp
from rich.table import Table

from codeclab.local.template import REGION, Resolver, synthesized_template
from codeclab.terminal import wide_console

REPO = Path(__file__).resolve().parents[1]
LAMBDAS = REPO / "lambdas"
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "bench_cold_import.json"
# Timed inside the child, around the import alone; it imports nothing else first, so the handler's
# own imports (json, logging...) are not preloaded and count as they would on Lambda. __import__, not
# importlib.import_module: only the former goes through the C import path that -X importtime records.
CHILD = """\
import sys, time
sys.path[:0] = sys.argv[1].split(sys.argv[3])
start = time.perf_counter()
__import__(sys.argv[2])
print("import_s", time.perf_counter() - start)
"""
MODULE_BODY = "module body"
IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)\s*$")


class ColdImportError(RuntimeError):
    """The module did not import in the child process."""


@dataclass(frozen=True)
class ImportTiming:
    import_s: float  # the import itself, timed inside the child
    process_s: float  # the whole child process: interpreter start-up, the import, exit


# --- measuring one module ---------------------------------------------------------------


def _run_child(
    module: str, path: list[Path], env: dict[str, str], python: str, flags: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    command = [python, *flags, "-c", CHILD, os.pathsep.join(map(str, path)), module, os.pathsep]
    # cwd is the first path entry: LAMBDA_TASK_ROOT, where the Lambda runtime starts too.
    proc = subprocess.run(command, cwd=path[0], env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise ColdImportError(f"importing {module} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def time_import(module: str, path: list[Path], env: dict[str, str], python: str = sys.executable) -> ImportTiming:
    """One fresh process that imports `module` with `path` first on sys.path and only `env` set."""
    started = time.perf_counter()
    proc = _run_child(module, path, env, python)
    process_s = time.perf_counter() - started
    # The last line: a handler may print while it imports, the child's own line comes after.
    label, value = proc.stdout.strip().splitlines()[-1].split()
    if label != "import_s":
        raise ColdImportError(f"unexpected output from the child importing {module}: {proc.stdout[-500:]}")
    return ImportTiming(float(value), process_s)


def parse_importtime(stderr: str, module: str) -> dict[str, float]:
    """Self time in ms per top-level package, over the imports that `module`'s own import triggered,
    with the module's own body as MODULE_BODY.

    -X importtime prints a module after its children, indented two spaces per level. The
    interpreter's start-up imports come first at level 0; `module` is the last level-0 entry
    with its name, and its subtree is every line after the level-0 entry before it.
    """
    entries = []  # (level, name, self_us)
    for line in stderr.splitlines():
        if match := IMPORTTIME.match(line):
            entries.append(((len(match.group(3)) - 1) // 2, match.group(4), int(match.group(1))))
    ends = [i for i, (level, name, _) in enumerate(entries) if level == 0 and name == module]
    if not ends:
        raise ColdImportError(f"-X importtime printed no entry for {module}")
    end = ends[-1]
    start = max((i for i in range(end) if entries[i][0] == 0), default=-1) + 1
    totals_us: dict[str, int] = {}
    for _, name, self_us in entries[start : end + 1]:
        # The module's own self time is its body: for a handler, mostly building its boto3 clients.
        package = MODULE_BODY if name == module else name.split(".")[0]
        totals_us[package] = totals_us.get(package, 0) + self_us
    ranked = sorted(totals_us.items(), key=lambda item: item[1], reverse=True)
    return {package: us / 1000 for package, us in ranked}


def import_profile(
    module: str, path: list[Path], env: dict[str, str], python: str = sys.executable
) -> dict[str, float]:
    proc = _run_child(module, path, env, python, flags=("-X", "importtime"))
    return parse_importtime(proc.stderr, module)


def measure_module(module: str, path: list[Path], env: dict[str, str], repeats: int, top: int) -> dict[str, Any]:
    time_import(module, path, env)  # untimed warm-up: writes .pyc files, fills the page cache
    runs = [time_import(module, path, env) for _ in range(repeats)]
    imports_ms = [run.import_s * 1000 for run in runs]
    profile = import_profile(module, path, env)
    return {
        "module": module,
        "import_ms_median": statistics.median(imports_ms),
        "import_ms_min": min(imports_ms),
        "import_ms_max": max(imports_ms),
        "import_ms_runs": imports_ms,
        "process_ms_median": statistics.median(run.process_s * 1000 for run in runs),
        "heaviest_packages_ms": dict(list(profile.items())[:top]),
        "profiled_total_ms": sum(profile.values()),  # with -X importtime's own overhead: for shares only
    }


# --- the environment a cold start sees --------------------------------------------------


def function_environments(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per handler module: its function's logical id, memory and resolved environment variables."""
    resolver = Resolver(template)
    out = {}
    for logical_id, resource in resolver.of_type("AWS::Lambda::Function").items():
        props = resource["Properties"]
        module = props["Handler"].partition(".")[0]
        out[module] = {
            "function": logical_id,
            "memory_mb": props.get("MemorySize", 128),
            "variables": resolver.function_variables(logical_id),
        }
    return out


def lambda_runtime_env(function: str, memory_mb: int, variables: dict[str, str]) -> dict[str, str]:
    """What the Lambda runtime sets, then the function's own variables; nothing from this shell leaks in."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LAMBDA_TASK_ROOT": str(LAMBDAS),
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}",
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        # boto3 resolves credentials when a client is created; placeholders keep it off the metadata endpoint.
        "AWS_ACCESS_KEY_ID": "cold-import",
        "AWS_SECRET_ACCESS_KEY": "cold-import",
        "AWS_SESSION_TOKEN": "cold-import",
        **variables,
    }


def modules_to_measure(functions: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Every module in lambdas/ with the environment to import it in.

    A module no function names as its handler (observability) is imported by all of them;
    it gets the variables the functions share.
    """
    shared = {k: v for f in functions.values() for k, v in f["variables"].items()}
    out = {}
    for path in sorted(LAMBDAS.glob("*.py")):
        module = path.stem
        default = {
            "function": f"shared-{module}",
            "memory_mb": max(f["memory_mb"] for f in functions.values()),
            "variables": shared,
        }
        function = functions.get(module, default)
        out[module] = lambda_runtime_env(function["function"], function["memory_mb"], function["variables"])
    return out


# --- report -----------------------------------------------------------------------------


def conditions(repeats: int, envs: dict[str, dict[str, str]]) -> dict[str, Any]:
    any_env = next(iter(envs.values()))
    return {
        "python": platform.python_version(),
        "interpreter": sys.executable,
        "repeats": repeats,
        "statistic": "median of the fresh processes; import timed inside the child (time.perf_counter)",
        "warm_up": "one untimed import per module first (.pyc written, files in the page cache)",
        "sys_path": "lambdas/ first (LAMBDA_TASK_ROOT), then the venv; codeclab from the editable install",
        "environment": sorted(any_env),
        "tracing": "LAMBDA_TASK_ROOT set, so Powertools' Tracer is on and patches modules at import, as on AWS",
        "heaviest_packages": "self time per top-level package from one extra -X importtime run (inflated by it)",
        "not_modelled": "a Lambda's CPU share (512 MB is about a third of a vCPU) and its layer's package versions",
    }


def print_table(results: list[dict[str, Any]], cond: dict[str, Any]) -> None:
    table = Table(
        title=f"Lambda handlers' cold import (median of {cond['repeats']} fresh processes, Python {cond['python']})",
        caption="import: timed inside the child; process: interpreter start-up + import + exit; "
        "heaviest: self ms per package under -X importtime",
    )
    table.add_column("module")
    for name in ("import ms", "min-max ms", "process ms"):
        table.add_column(name, justify="right")
    table.add_column("heaviest packages (self ms)")
    for row in results:
        heavy = ", ".join(f"{name} {ms:.0f}" for name, ms in row["heaviest_packages_ms"].items())
        table.add_row(
            row["module"],
            f"{row['import_ms_median']:.0f}",
            f"{row['import_ms_min']:.0f}-{row['import_ms_max']:.0f}",
            f"{row['process_ms_median']:.0f}",
            heavy,
        )
    wide_console().print(table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"${RUN_ID_ENV} sets the run id in the JSON (make bench sets one for all benches).",
    )
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per module; the median is reported")
    parser.add_argument("--top", type=int, default=5, help="heaviest packages to keep per module (default 5)")
    parser.add_argument("--json", type=Path, default=RESULTS_PATH, help=f"where to write the figures ({RESULTS_PATH})")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    envs = modules_to_measure(function_environments(synthesized_template(REPO / "cdk.out", REPO)))
    path = [LAMBDAS]
    results = [measure_module(module, path, env, args.repeats, args.top) for module, env in envs.items()]
    cond = conditions(args.repeats, envs)
    print_table(results, cond)
    payload = {"run": run_stamp(), "conditions": cond, "modules": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    wide_console().print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
