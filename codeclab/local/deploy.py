"""The synthesized stack, deployed into the emulator: its resources under their local names, created in moto.

The functions are created for the state machine to find, but their code runs in this process (hooks.py); the
job definition and queue are not created at all: they become the local Batch's settings (jobs.py).
"""

from __future__ import annotations

import io
import json
import zipfile
from functools import cached_property
from typing import Any

from codeclab.experiments.aws_clients import client as aws_client
from codeclab.local.jobs import JobDefinition, RetryStrategy, TimeLimitAction
from codeclab.local.template import ACCOUNT, Resolver

ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/codeclab-local"
LAMBDA_DEFAULT_RETRY_ATTEMPTS = 2  # Lambda's own, for an asynchronous invoke with no EventInvokeConfig


class Stack:
    """What the stack's template defines, resolved to local names, and `deploy` to create it in the emulator."""

    def __init__(self, template: dict[str, Any]) -> None:
        self.resolver = Resolver(template)

    def _one(self, resource_type: str) -> tuple[str, dict[str, Any]]:
        (item,) = self.resolver.of_type(resource_type).items()
        return item

    def _functions(self) -> dict[str, dict[str, Any]]:
        return self.resolver.of_type("AWS::Lambda::Function")

    @cached_property
    def table_name(self) -> str:
        return self.resolver.ref(self._one("AWS::DynamoDB::Table")[0])

    @cached_property
    def state_machine_arn(self) -> str:
        return self.resolver.ref(self._one("AWS::StepFunctions::StateMachine")[0])

    @cached_property
    def alert_topic_arn(self) -> str:
        return self.resolver.ref(self._one("AWS::SNS::Topic")[0])

    @cached_property
    def function_variables(self) -> dict[str, str]:
        """Every function's variables, resolved, in one set: here the functions share one process."""
        merged: dict[str, str] = {}
        for logical_id in self._functions():
            merged.update(self.resolver.function_variables(logical_id))
        return merged

    @cached_property
    def handler_modules(self) -> tuple[str, ...]:
        """The modules in lambdas/ that the functions' handlers live in, the API's first (it answers first)."""
        modules = {str(r["Properties"]["Handler"]).partition(".")[0]: None for r in self._functions().values()}
        return tuple(sorted(modules, key=lambda module: module != "api"))

    @property
    def bucket(self) -> str:
        return self.function_variables["ARTIFACT_BUCKET"]

    def job_definition(self) -> JobDefinition:
        """The template's job definition and job queue, as the local Batch applies them."""
        _, job = self._one("AWS::Batch::JobDefinition")
        container = self.resolver.resolve(job["Properties"]["ContainerProperties"])
        _, queue = self._one("AWS::Batch::JobQueue")
        return JobDefinition(
            command=list(container.get("Command", [])),
            environment={e["Name"]: str(e["Value"]) for e in container.get("Environment", [])},
            retry=RetryStrategy.from_template(job["Properties"].get("RetryStrategy")),
            time_limit_actions=tuple(
                TimeLimitAction.from_template(entry)
                for entry in queue["Properties"].get("JobStateTimeLimitActions", [])
            ),
        )

    def async_retry_attempts(self, module_name: str) -> int:
        """The retries Lambda gives an asynchronous invoke of the function whose handler is in `module_name`."""
        names = {
            self.resolver.ref(logical_id)
            for logical_id, resource in self._functions().items()
            if resource["Properties"]["Handler"].partition(".")[0] == module_name
        }
        for config in self.resolver.of_type("AWS::Lambda::EventInvokeConfig").values():
            if self.resolver.resolve(config["Properties"]["FunctionName"]) in names:
                return int(config["Properties"].get("MaximumRetryAttempts", LAMBDA_DEFAULT_RETRY_ATTEMPTS))
        return LAMBDA_DEFAULT_RETRY_ATTEMPTS

    # -- deploy --------------------------------------------------------------------------
    def deploy(self) -> None:
        """Create the table, the buckets, the alert topic, the functions and the state machine in the emulator."""
        self._deploy_table()
        for logical_id in self.resolver.of_type("AWS::S3::Bucket"):
            aws_client("s3").create_bucket(Bucket=self.resolver.ref(logical_id))
        aws_client("sns").create_topic(Name=self.resolver.get_att(self._one("AWS::SNS::Topic")[0], "TopicName"))
        self._deploy_functions()
        logical_id, machine = self._one("AWS::StepFunctions::StateMachine")
        aws_client("stepfunctions").create_state_machine(
            name=self.resolver.get_att(logical_id, "Name"),
            definition=self.resolver.resolve(machine["Properties"]["DefinitionString"]),
            roleArn=ROLE_ARN,
            type="STANDARD",
        )

    def _deploy_table(self) -> None:
        logical_id, table = self._one("AWS::DynamoDB::Table")
        props = table["Properties"]
        aws_client("dynamodb").create_table(
            TableName=self.resolver.ref(logical_id),
            BillingMode="PAY_PER_REQUEST",
            KeySchema=props["KeySchema"],
            AttributeDefinitions=props["AttributeDefinitions"],
            GlobalSecondaryIndexes=props.get("GlobalSecondaryIndexes", []),
        )

    def _deploy_functions(self) -> None:
        client, code = aws_client("lambda"), _placeholder_zip()
        aws_client("iam").create_role(
            RoleName="codeclab-local", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
        )
        for logical_id, resource in self._functions().items():
            props = resource["Properties"]
            client.create_function(
                FunctionName=self.resolver.ref(logical_id),
                Runtime=props.get("Runtime", "python3.11"),
                Role=ROLE_ARN,
                Handler=props["Handler"],
                Code={"ZipFile": code},
                Environment={"Variables": self.resolver.function_variables(logical_id)},
            )


def _placeholder_zip() -> bytes:
    """moto wants a code package; the real handler runs in-process instead."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "codeclab local mode runs the handlers from lambdas/ in-process")
    return buffer.getvalue()
