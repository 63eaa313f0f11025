"""Every patch to moto's internals, in one place. `tests/local/test_patches.py` is their canary.

moto executes the state machine's ASL, but two of its integrations cannot run here:
- a Lambda invoke needs Docker: `LambdaFunction._invoke_lambda` is replaced so the
  function's real handler runs in this process;
- `batch:submitJob.sync` fails (getmoto/moto#10076: parameter normalisation is stubbed,
  so `JobName` is never found) and moto's Batch would need Docker anyway: the Batch
  service task is replaced so the job runs as a local worker process.

And one bug: when an execution is stopped while a Map iteration runs, moto's Map then raises
(its MapIterationAborted event is built from the stop's bare error string), and the error
replaces the stop, so the execution ends FAILED with States.Runtime instead of ABORTED.
`Environment.set_error` is wrapped so that, as on AWS, a stopped execution stays stopped.

And one notification: the table lives in this process, so `DynamoDBBackend.put_item` and
`update_item` are wrapped to tell the local service after each write, whoever made it (a handler
here, or the worker over HTTP). That is how runs/ mirrors every status change and progress write.

And one piece of noise: when an execution is stopped during a `.sync` task, moto's TimeoutSecondsPath
pops the task's output as the timeout (its path is not evaluated once stopped), and the task's side
thread then dies on a TypeError. The execution ends ABORTED regardless; `threading.excepthook` is
wrapped to drop exactly that traceback from that thread.

And one race: moto keeps a table's items in plain dicts that the server's threads read and write at once, so
a Query (which walks every item for an index) could fail with "dictionary changed size during iteration"
while another thread's put_item added an item. Every item operation of `DynamoDBBackend` takes one lock, so
each is whole, as DynamoDB's own are. The write listener runs after the lock is released.

And one repeated cost: botocore's `Loader.list_available_services` lists every service in botocore's data folders
(a scan of some 400 folders). It caches per loader, but moto makes a loader for each model it loads and a session
for each backend, so a `codeclab run` scanned about 34 times (1 s on a loaded machine). The answer is kept per
search path and type for the process; the folders do not change while it runs.

And one parse: every execution parses its state machine's definition with moto's ANTLR parser, on the emulator's
thread, before its first state (0.12 s for this stack's, 0.23 s the first time: a tenth of a one-frame `codeclab
run`). `AmazonStateLanguageParser.parse` keeps what it parsed per definition, and each caller gets its own deep copy
of the evaluation components (8 ms), so no execution shares a component with another. A process's first parse
costs more, ANTLR building its tables (0.24 s of CreateStateMachine in a `codeclab run`), so the components are also
kept on disk between processes: pickled (28 KB, 1.4 ms to load) in the folder `install` is given, beside the
synthesized template whose trust they share, under the hash of the definition, moto's version and Python's. A file
that does not load (torn, another moto) is parsed again and rewritten; one that cannot be written is skipped. A
definition read from disk comes without ANTLR's parse tree (None): moto's callers on this path (the state machine's
validation, the execution worker) use only the components.

And one client per task: moto's Step Functions integrations make a new boto3 client for every task they run
(`boto_client_for`): 5-10 ms each, more under load, for every Lambda step, SNS alert and distributed Map S3 read and
write of every experiment. The four modules this stack's tasks go through make each client once per service, region
and emulator port; the clients are thread-safe, and they go when the patches do (the next emulator's fault hooks are
on the default session its clients are made from).

And one import: moto's Step Functions interpreter imports `moto.batch.utils` for one enum, and
`moto/batch/__init__.py` imports Batch's models and, with them, all of EC2's (about 0.8 s of every
`codeclab run`). `moto.batch` is put in place as a lazy package: its submodules load from moto's own folder,
and its models (`batch_backends`) only when something asks for them. Local mode never calls Batch's API.

And one wait: `ThreadedMotoServer` serves with socketserver's default poll of 0.5 s, and its `stop` waits for the
next poll to see the request: half a second of every `codeclab run` and of every test that starts a stack.
`stop_server` wakes the loop with one connection as it asks it to stop (socketserver checks the request as soon as
its select returns, before it accepts anything).
"""

# ruff: noqa: E402 -- the lazy moto.batch must be in place before the interpreter's modules are imported

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import itertools
import json
import os
import pickle
import socket
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

LAZY_PACKAGE = "moto.batch"


def _lazy_moto_batch() -> None:
    """`moto.batch` as a package whose __init__ (Batch's models, EC2's models) runs on first attribute access."""
    import moto  # the imports below need it anyway

    if LAZY_PACKAGE in sys.modules:
        return
    spec = importlib.machinery.ModuleSpec(LAZY_PACKAGE, None, is_package=True)
    spec.submodule_search_locations = [str(Path(next(iter(moto.__path__))) / "batch")]
    package = importlib.util.module_from_spec(spec)

    def load(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(importlib.import_module(f"{LAZY_PACKAGE}.models"), name)

    cast(Any, package).__getattr__ = load
    sys.modules[LAZY_PACKAGE] = package
    moto.batch = package  # as the import system binds a loaded submodule


_lazy_moto_batch()

from boto3.dynamodb.types import TypeDeserializer
from botocore.loaders import Loader
from moto import __version__ as moto_version
from moto.awslambda.models import LambdaFunction
from moto.dynamodb.models import DynamoDBBackend
from moto.server import ThreadedMotoServer
from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval import (
    resource_eval_s3 as item_reader_s3,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval import (
    resource_eval_s3 as result_writer_s3,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_sns
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (
    StateTaskServiceBatch,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.utils import boto_client
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

from codeclab.experiments.record import ExperimentRecord
from codeclab.local.jobs import JobDescription, SubmitJobParameters

# (function name, handler "module.function", environment, event) -> (JSON payload, errored)
LambdaRunner = Callable[[str, str, dict[str, str], Any], tuple[str, bool]]
# (SubmitJob parameters as the ASL gives them, whether the execution has ended) -> the finished job's description
JobRunner = Callable[[SubmitJobParameters, Callable[[], bool]], JobDescription]
# (table name, a reader of the written item's current state as plain DynamoDB JSON) after a write landed
ItemWritten = Callable[[str, Callable[[], ExperimentRecord | None]], None]

# The other item operations of moto's DynamoDB backend: each takes the lock (put_item and update_item take it too).
LOCKED = ("get_item", "query", "scan", "delete_item", "transact_write_items")
# moto's Step Functions integrations that this stack's tasks use: Lambda, SNS, the Map's S3 reader and writer.
INTEGRATIONS = (lambda_eval_utils, state_task_service_sns, item_reader_s3, result_writer_s3)
PATCHED = (
    (Loader, "list_available_services"),
    (AmazonStateLanguageParser, "parse"),
    (LambdaFunction, "_invoke_lambda"),
    (StateTaskServiceBatch, "_eval_service_task"),
    (StateTaskServiceBatch, "_build_sync_resolver"),
    (Environment, "set_error"),
    (DynamoDBBackend, "put_item"),
    (DynamoDBBackend, "update_item"),
    *((DynamoDBBackend, name) for name in LOCKED),
    *((module, "boto_client_for") for module in INTEGRATIONS),
)
_items_lock = threading.RLock()  # see "one race" above
_integration_clients: dict[tuple[str, str, str], Any] = {}  # (region, service, emulator port) -> client
_clients_lock = threading.Lock()


@dataclass
class _Hooks:
    lambda_runner: LambdaRunner | None = None
    job_runner: JobRunner | None = None
    finished_jobs: dict[str, JobDescription] = field(default_factory=dict)
    item_written: ItemWritten | None = None
    parse_cache: Path | None = None  # where parsed definitions are kept between processes (see "one parse")


_hooks = _Hooks()
_originals: dict[tuple[Any, str], Any] = {}  # (class or module, attribute) -> original
_job_ids = itertools.count(1)


def install(
    lambda_runner: LambdaRunner,
    job_runner: JobRunner,
    item_written: ItemWritten | None = None,
    parse_cache: Path | None = None,
) -> None:
    """Route Lambda invokes and Batch jobs to local runners, and table writes to a listener (idempotent); keep
    parsed definitions in `parse_cache` (None: in this process only)."""
    _hooks.lambda_runner, _hooks.job_runner, _hooks.item_written = lambda_runner, job_runner, item_written
    _hooks.parse_cache = parse_cache
    if _originals:
        return
    replacements = (
        _listed_once(Loader.list_available_services), staticmethod(_parsed_once(AmazonStateLanguageParser.parse)),
        _invoke_lambda, _eval_batch_task, _build_batch_sync_resolver,
        _set_error_unless_stopped, _notifying(DynamoDBBackend.put_item), _notifying(DynamoDBBackend.update_item),
        *(_locked(getattr(DynamoDBBackend, name)) for name in LOCKED),
        *(_client_once for _ in INTEGRATIONS),
    )  # fmt: skip
    for (owner, name), replacement in zip(PATCHED, replacements, strict=True):
        _originals[(owner, name)] = inspect.getattr_static(owner, name)  # a staticmethod stays one when restored
        setattr(owner, name, replacement)
    _originals[(threading, "excepthook")] = threading.excepthook
    threading.excepthook = _excepthook


def uninstall() -> None:
    for (owner, name), original in _originals.items():
        setattr(owner, name, original)
    _originals.clear()
    _integration_clients.clear()


def stop_server(server: ThreadedMotoServer) -> None:
    """`server.stop()`, without waiting out the serving loop's poll (see "one wait" above)."""
    serving = server._server
    stopping = threading.Thread(target=server.stop, name="moto-stop")
    stopping.start()
    while stopping.is_alive() and serving is not None:
        with suppress(OSError):  # closed already, or the backlog is full: the poll ends the loop anyway
            socket.create_connection((str(serving.server_address[0]), serving.server_port), timeout=0.1).close()
        stopping.join(0.01)
    stopping.join()


def _invoke_lambda(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
    assert _hooks.lambda_runner is not None
    env = dict(self.environment_vars or {})
    payload, errored = _hooks.lambda_runner(self.function_name, str(self.handler), env, event)
    return payload, errored, ""


def _eval_batch_task(self: StateTaskServiceBatch, env: Environment, resource_runtime_part: Any,
                     normalised_parameters: dict, state_credentials: Any) -> None:  # fmt: skip
    assert _hooks.job_runner is not None
    parameters = cast(SubmitJobParameters, normalised_parameters)  # the task's Parameters, resolved by moto
    # The interpreter's own program state: a stop (or an execution timeout) shows there at once, while
    # DescribeExecution keeps saying RUNNING until this task returns.
    description = _hooks.job_runner(parameters, lambda: not env.is_running())
    job_id = description.setdefault("JobId", f"local-job-{next(_job_ids)}")
    _hooks.finished_jobs[job_id] = description
    env.stack.append({"JobId": job_id, "JobName": description.get("JobName", "")})


def _build_batch_sync_resolver(self: StateTaskServiceBatch, env: Environment, resource_runtime_part: Any,
                               normalised_parameters: dict, state_credentials: Any) -> Callable[[], Any]:  # fmt: skip
    """Like moto's own resolver, for a job that has already finished: its description, or a TaskFailed."""
    job_id = env.stack.pop()["JobId"]
    description = _hooks.finished_jobs.pop(job_id)

    def resolve() -> JobDescription:
        if description["Status"] == "SUCCEEDED":
            return description
        details = TaskFailedEventDetails(
            resource=self._get_sfn_resource(),
            resourceType=self._get_sfn_resource_type(),
            error=StatesErrorNameType.StatesTaskFailed.to_name(),
            cause=to_json_str(description),
        )
        raise FailureEventException(
            FailureEvent(
                env=env,
                error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(taskFailedEventDetails=details),  # type: ignore[typeddict-item]
            )
        )

    return resolve


# The thread moto starts beside a .sync task (state_task_service_callback.py).
SYNC_SIDE_THREAD = "WaitForTaskToken_SyncTask_"


def _excepthook(args: threading.ExceptHookArgs) -> None:
    name = args.thread.name if args.thread is not None else ""
    if args.exc_type is TypeError and name.startswith(SYNC_SIDE_THREAD):
        return  # the stopped-execution noise described above; nothing else is dropped
    _originals[(threading, "excepthook")](args)


def _set_error_unless_stopped(self: Environment, error: ExecutionFailedEventDetails) -> None:
    if isinstance(self.program_state(), ProgramStopped):
        return  # StopExecution already ended it: the stop is the outcome, whatever fails while unwinding
    _originals[(Environment, "set_error")](self, error)


def _listed_once(list_services: Callable[..., list[str]]) -> Callable[..., list[str]]:
    found: dict[tuple[tuple[str, ...], str], list[str]] = {}

    def listed(self: Loader, type_name: str) -> list[str]:
        key = (tuple(self.search_paths), type_name)
        if key not in found:
            found[key] = list_services(self, type_name)
        return list(found[key])

    return listed


def _client_once(region: str, service: str, state_credentials: Any = None) -> Any:
    """moto's `boto_client_for`, made once per region, service and emulator port (see "one client per task")."""
    if state_credentials is not None:  # a task that assumes a role: its own client, as moto makes it
        return boto_client.boto_client_for(region, service, state_credentials)
    key = (region, service, os.environ.get("MOTO_PORT", ""))
    with _clients_lock:
        if key not in _integration_clients:
            _integration_clients[key] = boto_client.boto_client_for(region, service)
        return _integration_clients[key]


def _parsed_once(parse: Callable[[str], tuple[Any, Any]]) -> Callable[[str], tuple[Any, Any]]:
    parsed: dict[str, tuple[Any, Any]] = {}
    lock = threading.Lock()

    def parsed_once(definition: str) -> tuple[Any, Any]:
        with lock:
            if definition not in parsed:
                kept = _parsed_file(definition)
                parsed[definition] = _kept_parse(kept) or _parse_and_keep(parse, definition, kept)
            program, tree = parsed[definition]
        return copy.deepcopy(program), tree  # the parse tree is only ever read

    return parsed_once


def _parsed_file(definition: str) -> Path | None:
    """Where a definition's parsed components are kept: keyed by the definition, moto and Python, which pickle
    names classes of."""
    if _hooks.parse_cache is None:
        return None
    key = hashlib.sha256(f"moto {moto_version} python {sys.version}\n{definition}".encode()).hexdigest()
    return _hooks.parse_cache / f"asl-{key}.pickle"


def _kept_parse(path: Path | None) -> tuple[Any, None] | None:
    """The components kept in `path` (None: no folder), without a parse tree; None when none load."""
    if path is None:
        return None
    try:
        return pickle.loads(path.read_bytes()), None
    except Exception:  # missing, torn, or another moto's classes: each means parse again
        return None


def _parse_and_keep(parse: Callable[[str], tuple[Any, Any]], definition: str, path: Path | None) -> tuple[Any, Any]:
    program, tree = parse(definition)  # an invalid definition raises: nothing is kept
    if path is not None:
        partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(pickle.dumps(program))
            partial.replace(path)  # whole or not there: a reader never sees a torn file
        except Exception:  # a full or read-only disk, or components that do not pickle: the next process parses
            with suppress(OSError):
                partial.unlink(missing_ok=True)
    return program, tree


def _locked(operation: Callable[..., Any]) -> Callable[..., Any]:
    def whole(*args: Any, **kwargs: Any) -> Any:
        with _items_lock:
            return operation(*args, **kwargs)

    return whole


def _notifying(write: Callable[..., Any]) -> Callable[..., Any]:
    def written(self: DynamoDBBackend, table_name: str, *args: Any, **kwargs: Any) -> Any:
        with _items_lock:
            item = write(self, table_name, *args, **kwargs)  # raises for a refused write: nothing to tell
        listener = _hooks.item_written
        if listener is not None and item is not None:
            table = self.get_table(table_name)
            keys = {
                str(table.hash_key_attr): item.hash_key.to_json(),
                str(table.range_key_attr): item.range_key.to_json(),
            }
            listener(table_name, lambda: _read(self, table_name, keys))
        return item

    return written


def _read(backend: DynamoDBBackend, table_name: str, keys: dict[str, Any]) -> ExperimentRecord | None:
    """The item as it stands, read whole: a writer in another thread changes its attributes in place."""
    with _items_lock:
        return _plain(backend.get_item(table_name, keys))


def _plain(item: Any) -> ExperimentRecord | None:
    """A moto item as boto3's resource layer returns one (numbers as Decimal); the stack's one table holds records."""
    if item is None:
        return None
    deserializer = TypeDeserializer()
    return cast(
        ExperimentRecord,
        {name: deserializer.deserialize(value) for name, value in item.to_json()["Attributes"].items()},
    )


def lambda_error_payload(exc: BaseException) -> str:
    """What Lambda returns for an unhandled exception; Step Functions names the error after errorType."""
    return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc), "stackTrace": []})
