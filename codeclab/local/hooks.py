"""What moto's patched integrations call here (patches.py holds the patches): the stack's Lambda handlers, run
in this process as Lambda runs them, and the listeners told of every write to the experiments table.

The Batch `.sync` task's hook is the local Batch itself (jobs.LocalJobRunner).
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from codeclab.experiments.record import ExperimentRecord
from codeclab.local import patches
from codeclab.local.faults import LAMBDA_FAULT_ENV, FaultState
from codeclab.local.template import ACCOUNT, REGION, cdk_app_dir

log = logging.getLogger("codeclab.local")

# Called with a reader of the item's current state after every write to the experiments table.
RecordListener = Callable[[Callable[[], ExperimentRecord | None]], None]


class InjectedLambdaFault(RuntimeError):
    """The error an injected Lambda fault raises (it reaches Step Functions as the function's error)."""


class Handlers:
    """The handlers in lambdas/, each imported once, and invoked as Lambda invokes them, faults included."""

    def __init__(self, faults: FaultState) -> None:
        self._faults = faults
        self._modules: dict[str, ModuleType] = {}
        # One invocation of a handler at a time, as one Lambda instance serves them: a sweep's Map calls a handler
        # from several threads, and its module state (Powertools' resolver and metrics) is not shared-safe.
        # Different handlers run side by side, as different functions do, so the API answers while the
        # workflow's functions run. Imports (sys.path, sys.modules) take the one import lock.
        self._import_lock = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}

    def run(self, function_name: str, handler: str, env: dict[str, str], event: Any) -> tuple[str, bool]:
        """A Lambda invoke from the state machine (patches.LambdaRunner): the JSON payload, and whether it errored."""
        module_name, _, attribute = handler.partition(".")
        try:
            result = self.call(module_name, attribute, function_name, event)
        except Exception as exc:  # a handler's exception is the Lambda's function error, as on AWS
            log.info("%s raised %s: %s", function_name, type(exc).__name__, exc)
            return patches.lambda_error_payload(exc), True
        return json.dumps(result, default=str), False

    def call(self, module_name: str, attribute: str, function_name: str, event: Any) -> Any:
        """One invocation; its exception is the caller's."""
        if self._faults.lambda_fails(module_name):
            raise InjectedLambdaFault(f"{LAMBDA_FAULT_ENV}: injected failure of {function_name}")
        module, lock = self._module(module_name)
        with lock:
            return getattr(module, attribute)(event, _LocalContext(function_name))

    def preload(self, modules: tuple[str, ...]) -> threading.Thread:
        """Import the handlers' modules on a thread of their own, so that the first invocation of each does not wait
        for its imports: most of them run while the first Batch job does, on another core."""

        def load() -> None:
            for name in modules:
                try:
                    self._module(name)
                except Exception:  # its first invocation imports it again and fails as Lambda would
                    log.exception("could not import the handler module %s", name)

        thread = threading.Thread(target=load, name="handler-imports", daemon=True)
        thread.start()
        return thread

    def unload(self) -> None:
        """Forget the imported handlers, so a later emulator's import binds its clients to that one."""
        for module in self._modules:
            sys.modules.pop(module, None)
        sys.modules.pop("observability", None)

    def _module(self, name: str) -> tuple[ModuleType, threading.RLock]:
        """The handler's module, imported once, and the lock one invocation of it holds."""
        with self._import_lock:
            if name not in self._modules:
                lambdas = str(cdk_app_dir() / "lambdas")
                sys.path.insert(0, lambdas)
                # a fresh import, so module-scope clients bind to this emulator, not an earlier one
                sys.modules.pop(name, None)
                try:
                    self._modules[name] = importlib.import_module(name)
                finally:
                    sys.path.remove(lambdas)
                self._locks[name] = threading.RLock()
            return self._modules[name], self._locks[name]


class _LocalContext:
    """The fields of a Lambda context object that Powertools reads."""

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self.memory_limit_in_mb = 256
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.aws_request_id = "local"


class RecordWrites:
    """Tells every listener after each write to the experiments table (patches.ItemWritten), whoever wrote."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name
        self.listeners: list[RecordListener] = []

    def __call__(self, table_name: str, read: Callable[[], ExperimentRecord | None]) -> None:
        if table_name != self.table_name:
            return
        for listener in tuple(self.listeners):  # a copy: `runner.wait` adds and removes its own as writes land
            try:
                listener(read)
            except Exception:  # a listener must never turn a write that landed into a failed one
                log.exception("a record listener failed")
