"""Canary: every moto internal that codeclab/local/patches.py replaces is still there, in the same shape.

If this fails after a moto upgrade, re-read the patched code in moto before touching the pin.
"""

from __future__ import annotations

import inspect
import json
import pickle
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from codeclab.local import patches


def test_moto_is_the_pinned_version() -> None:
    assert version("moto") == "5.2.5", "patches.py was written against moto 5.2.5: re-check it before upgrading"


def test_patched_members_exist_with_the_signatures_we_replace() -> None:
    expected = {
        "list_available_services": ["self", "type_name"],
        "parse": ["definition"],
        "boto_client_for": ["region", "service", "state_credentials"],
        "_invoke_lambda": ["self", "event"],
        "_eval_service_task": ["self", "env", "resource_runtime_part", "normalised_parameters", "state_credentials"],
        "_build_sync_resolver": ["self", "env", "resource_runtime_part", "normalised_parameters", "state_credentials"],
        "set_error": ["self", "error"],
        # a write's listener needs the table and the item it returns, whatever else the call carries
        "put_item": [
            "self",
            "table_name",
            "item_attrs",
            "expected",
            "condition_expression",
            "expression_attribute_names",
            "expression_attribute_values",
            "overwrite",
            "return_values_on_condition_check_failure",
        ],
        "update_item": [
            "self",
            "table_name",
            "key",
            "update_expression",
            "expression_attribute_names",
            "expression_attribute_values",
            "attribute_updates",
            "expected",
            "condition_expression",
            "return_values_on_condition_check_failure",
        ],
        # the item operations that take the lock: wrapped whole, whatever their arguments; here to be re-read
        # (is each still every operation that walks or changes a table's items?) when moto changes them
        "get_item": ["self", "table_name", "keys", "projection_expressions"],
        "query": [
            "self", "table_name", "hash_key_dict", "range_comparison", "range_value_dicts", "limit",
            "exclusive_start_key", "scan_index_forward", "projection_expressions", "index_name", "consistent_read",
            "expr_names", "expr_values", "filter_expression", "hash_key_conditions", "range_key_conditions",
            "filter_kwargs",
        ],
        "scan": [
            "self", "table_name", "filters", "limit", "exclusive_start_key", "filter_expression", "expr_names",
            "expr_values", "index_name", "consistent_read", "projection_expression", "segments",
        ],
        "delete_item": [
            "self", "table_name", "key", "expression_attribute_names", "expression_attribute_values",
            "condition_expression", "return_values_on_condition_check_failure",
        ],
        "transact_write_items": ["self", "transact_items"],
    }  # fmt: skip
    for owner, name in patches.PATCHED:
        original = patches._originals.get((owner, name), getattr(owner, name))
        assert _parameters(original) == expected[name], f"{owner.__name__}.{name} changed"


def _parameters(member: object) -> list[str]:
    """A method's parameters; through a decorator without functools.wraps (botocore's instance_cache), the method's."""
    cells = getattr(member, "__closure__", None) or ()
    inner = [cell.cell_contents for cell in cells if inspect.isfunction(cell.cell_contents)]
    return list(inspect.signature(inner[0] if inner else member).parameters)  # type: ignore[arg-type]


def test_install_replaces_and_uninstall_restores() -> None:
    before = {(owner, name): getattr(owner, name) for owner, name in patches.PATCHED}
    patches.install(lambda *a: ("{}", False), lambda params, ended: {"Status": "SUCCEEDED"})
    try:
        assert all(getattr(owner, name) is not before[(owner, name)] for owner, name in patches.PATCHED)
    finally:
        patches.uninstall()
    assert all(getattr(owner, name) is before[(owner, name)] for owner, name in patches.PATCHED)


def test_the_batch_integration_still_needs_the_patch() -> None:
    """moto#10076: the parser's parameter normalisation is a no-op, so `JobName` never becomes `jobName`."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (
        StateTaskServiceBatch,
    )

    parameters = {"JobName": "x", "JobQueue": "q", "JobDefinition": "d"}
    StateTaskServiceBatch()._normalise_parameters(parameters)
    assert "jobName" not in parameters, "moto now normalises Batch parameters: the Batch patch may be removable"


def test_moto_still_lets_an_error_replace_a_stop() -> None:
    """The Map-abort bug: once moto keeps a stopped execution stopped itself, the set_error patch can go."""
    from moto.stepfunctions.parser.asl.eval.environment import Environment

    original = patches._originals.get((Environment, "set_error"), Environment.set_error)
    assert "ProgramStopped" not in inspect.getsource(original), "moto now guards set_error: drop the patch"


def test_moto_still_reads_a_stopped_tasks_output_as_its_timeout() -> None:
    """Once TimeoutSecondsPath stops popping a value it never pushed, the excepthook filter can go."""
    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSecondsPath

    source = inspect.getsource(TimeoutSecondsPath._eval_seconds)
    assert "seconds = env.stack.pop()" in source and "is_running" not in source, "drop patches._excepthook"


def test_moto_batch_is_lazy_until_its_models_are_asked_for() -> None:
    """moto.batch's __init__ would import EC2's models (about 0.8 s of every `codeclab run`); the interpreter only
    needs moto.batch.utils. Anything that asks for Batch's backend still gets it."""
    import subprocess
    import sys

    probe = (
        "import sys, codeclab.local.patches, moto.batch; loaded = 'moto.ec2.models' in sys.modules; "
        "backends = moto.batch.batch_backends; print(loaded, 'moto.ec2.models' in sys.modules, type(backends).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "BackendDict"]


def test_stop_server_ends_the_serving_loop_before_its_poll_would() -> None:
    """stop_server wakes moto's loop with a connection; the control is moto's own stop, which waits for the poll.
    The poll is made an hour long, so the difference is not a matter of timing: only a woken loop ends at all."""
    import threading

    from moto.server import ThreadedMotoServer
    from werkzeug.serving import BaseWSGIServer

    original = BaseWSGIServer.serve_forever
    assert inspect.signature(original).parameters["poll_interval"].default == 0.5

    def hour_long_poll(self: BaseWSGIServer, poll_interval: float = 3600.0) -> None:
        original(self, poll_interval)

    for stop, ends in ((patches.stop_server, True), (ThreadedMotoServer.stop, False)):
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        BaseWSGIServer.serve_forever = hour_long_poll  # type: ignore[method-assign]
        try:
            server.start()
        finally:
            BaseWSGIServer.serve_forever = original  # type: ignore[method-assign]
        stopping = threading.Thread(target=stop, args=(server,), daemon=True)
        stopping.start()
        stopping.join(10 if ends else 1)  # the loop ends at once when woken; unwoken, not for an hour
        assert stopping.is_alive() is not ends
        if not ends:  # release the control's loop the way stop_server does
            patches.stop_server(server)


def test_a_definition_is_parsed_once_and_each_caller_gets_components_of_its_own() -> None:
    """Executions evaluate the components they are given: a shared one could carry one execution's state into
    another. Each parse of the same definition is a deep copy; another definition is parsed for itself."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    definition = json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})
    other = json.dumps({"StartAt": "B", "States": {"B": {"Type": "Succeed"}}})
    patches.install(lambda *a: ("{}", False), lambda params, ended: {"Status": "SUCCEEDED"})
    try:
        (first, tree), (second, same_tree) = (AmazonStateLanguageParser.parse(definition) for _ in range(2))
        third, _ = AmazonStateLanguageParser.parse(other)
    finally:
        patches.uninstall()
    assert first is not second and type(first) is type(second) and tree is same_tree
    assert [type(c).__name__ for c in vars(first).values()] == [type(c).__name__ for c in vars(second).values()]
    assert third is not first and "B" in repr(vars(third))
    assert isinstance(inspect.getattr_static(AmazonStateLanguageParser, "parse"), staticmethod)  # restored as it was


def test_a_parsed_definition_is_kept_on_disk_for_the_next_process_and_a_torn_file_is_parsed_again(
    tmp_path: Path,
) -> None:
    """Each `_parsed_once` stands for a process (its own memory). The second loads what the first kept, without
    parsing; a torn file, or a folder that cannot be made, costs a parse, never an error. Control: with no
    folder, every process parses."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    original = inspect.getattr_static(AmazonStateLanguageParser, "parse").__func__
    parses: list[str] = []

    def counted(definition: str) -> tuple[Any, Any]:
        parses.append(definition)
        return original(definition)

    def in_a_new_process(parse_cache: Path | None) -> tuple[Any, Any]:
        patches.install(
            lambda *a: ("{}", False), lambda params, ended: {"Status": "SUCCEEDED"}, parse_cache=parse_cache
        )
        return patches._parsed_once(counted)(definition)

    definition = json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": 7, "End": True}}})
    folder, not_a_folder = tmp_path / "parsed", tmp_path / "a-file"
    not_a_folder.write_text("")
    try:
        first, tree = in_a_new_process(folder)
        (kept,) = folder.iterdir()
        second, no_tree = in_a_new_process(folder)
        assert len(parses) == 1 and tree is not None and no_tree is None
        assert type(second) is type(first)
        assert [type(c).__name__ for c in vars(second).values()] == [type(c).__name__ for c in vars(first).values()]
        kept.write_bytes(kept.read_bytes()[: kept.stat().st_size // 2])  # a process killed while writing
        in_a_new_process(folder)
        assert len(parses) == 2 and pickle.loads(kept.read_bytes()) is not None  # parsed again, kept whole
        in_a_new_process(not_a_folder)
        in_a_new_process(None)
        in_a_new_process(None)
        assert len(parses) == 5 and list(folder.iterdir()) == [kept]  # control: no folder, nothing kept
    finally:
        patches.uninstall()


def test_the_parses_a_kept_definition_serves_use_its_components_alone() -> None:
    """A definition loaded from disk comes without ANTLR's parse tree: the two callers in moto that parse this
    stack's definition (its validation at CreateStateMachine, an execution's entry point) must not read it."""
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    entry = inspect.getsource(ExecutionWorker._get_evaluation_entrypoint)
    validation = inspect.getsource(StepFunctionsParserBackend._validate_definition)
    assert "AmazonStateLanguageParser.parse(" in entry and entry.rstrip().endswith(")[0]")
    assert "\n            AmazonStateLanguageParser.parse(definition)\n" in validation  # the result is dropped


def test_the_integrations_make_one_client_per_service_and_emulator_until_the_patches_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each module still takes moto's one client maker by name (so patching it there reaches every task); patched,
    a service's client is made once per emulator port, and uninstalling forgets them."""
    from moto.stepfunctions.parser.asl.utils import boto_client

    assert all(module.boto_client_for is boto_client.boto_client_for for module in patches.INTEGRATIONS)
    monkeypatch.setenv("MOTO_PORT", "5001")
    patches.install(lambda *a: ("{}", False), lambda params, ended: {"Status": "SUCCEEDED"})
    try:
        lambda_a, sns_a = (module.boto_client_for("us-east-1", service) for module, service in
                           zip(patches.INTEGRATIONS, ("lambda", "sns"), strict=False))  # fmt: skip
        assert patches.INTEGRATIONS[0].boto_client_for("us-east-1", "lambda") is lambda_a
        assert patches.INTEGRATIONS[1].boto_client_for("us-east-1", "lambda") is lambda_a  # shared by the modules
        assert sns_a is not lambda_a and sns_a.meta.endpoint_url == "http://localhost:5001"
        monkeypatch.setenv("MOTO_PORT", "5002")  # another emulator: its own clients
        assert patches.INTEGRATIONS[0].boto_client_for("us-east-1", "lambda").meta.endpoint_url.endswith(":5002")
    finally:
        patches.uninstall()
    assert all(module.boto_client_for is boto_client.boto_client_for for module in patches.INTEGRATIONS)
    assert not patches._integration_clients
