"""A stand-in for the worker that codec code may attack: `python -m tests.worker.sandbox.victim LAYER...`.

It reads a codec's source on stdin, runs its encoder in the sandbox with the named layers or
seccomp families taken out, then burns two CPU seconds (an RLIMIT_CPU the child set on it
would kill it there) and prints, as JSON, how the run ended, what the child returned, whether
its own priority, CPU affinity or rlimits changed, and its peak memory. A child that killed
it leaves no JSON at all.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

from codeclab.worker.errors import WorkerError
from codeclab.worker.sandbox.layers import Layer, SandboxPolicy
from codeclab.worker.sandbox.seccomp_filter import Family
from tests.worker.sandbox.support import run


def state() -> dict[str, object]:
    return {
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "affinity": sorted(os.sched_getaffinity(0)),
        "rlimits": [resource.getrlimit(r) for r in (resource.RLIMIT_CPU, resource.RLIMIT_NOFILE, resource.RLIMIT_AS)],
    }


def main(parts: list[str]) -> int:
    layers = {layer.value for layer in Layer}
    policy = SandboxPolicy().without(*(Layer(p) if p in layers else Family(p) for p in parts))
    code = sys.stdin.read()
    before = state()
    output, message = b"", ""
    try:
        output = run("encode", code, ["numpy"], policy).output
        outcome = "SUCCEEDED"
    except WorkerError as exc:
        outcome, message = exc.error_type, str(exc)
    start = time.process_time()
    while time.process_time() - start < 2:
        pass
    after = state()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"outcome": outcome, "message": message, "output": output[:4096].hex(),
                      "changed": before != after, "before": before, "after": after, "peak_mb": peak_mb}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
