"""The synthesized CloudFormation template: synthesized when its sources change, read, and
resolved to local names and ARNs (Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

STACK = "Codeclab"
ACCOUNT, REGION, PARTITION = "123456789012", "us-east-1", "aws"
# What the synthesized template depends on; a change to any of these re-synthesizes.
SOURCES = ("app.py", "cdk.json", "stacks", "lambdas", "codeclab/experiments")
HASH_FILE = ".codeclab-source-hash"
CDK_APP_ENV = "CODECLAB_CDK_APP"


class CdkAppNotFound(RuntimeError):
    """No codeclab CDK app to synthesize: local mode cannot start (the CLI and the demo exit 2)."""


def cdk_app_dir() -> Path:
    """The codeclab checkout whose CDK app local mode synthesizes and whose handlers it runs.

    $CODECLAB_CDK_APP when set, else the nearest directory holding cdk.json from the current one upwards, as
    `cdk` and `git` look. Never this file's location: an installed package carries no app.
    """
    override = os.environ.get(CDK_APP_ENV)
    if override:
        return _checkout(Path(override).resolve(), f"{CDK_APP_ENV}={override}")
    here = Path.cwd()
    for directory in (here, *here.parents):
        if (directory / "cdk.json").is_file():
            return _checkout(directory, str(directory / "cdk.json"))
    raise CdkAppNotFound(
        f"no cdk.json in {here} or above: local mode runs from a codeclab checkout; cd into it or set "
        f"{CDK_APP_ENV} to its path"
    )


def _checkout(directory: Path, found_by: str) -> Path:
    missing = [source for source in SOURCES if not (directory / source).exists()]
    if missing:
        raise CdkAppNotFound(
            f"{found_by}: {directory} is not a codeclab checkout (it has no {', '.join(missing)}); cd into one or "
            f"set {CDK_APP_ENV} to its path"
        )
    return directory


def default_cdk_out() -> Path:
    return cdk_app_dir() / "cdk.out"


def source_hash(app: Path) -> str:
    digest = hashlib.sha256()
    for source in SOURCES:
        root = app / source
        files = (
            [root]
            if root.is_file()
            else sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        )
        for path in files:
            digest.update(str(path.relative_to(app)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def synthesized_template(outdir: Path, repo: Path | None = None) -> dict[str, Any]:
    """The stack's template, re-synthesized only when its sources changed; `repo` defaults to `cdk_app_dir()`.

    Several processes may ask at once (two terminals, test workers): one synthesizes, the others wait on the
    lock and read its result, rather than reading a template half written.
    """
    app = repo or cdk_app_dir()
    wanted = source_hash(app)
    stamp = outdir / HASH_FILE
    template = outdir / f"{STACK}.template.json"
    outdir.mkdir(parents=True, exist_ok=True)
    with (outdir / ".synth.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (template.exists() and stamp.exists() and stamp.read_text() == wanted):
            env = {**os.environ, "CDK_OUTDIR": str(outdir), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
            proc = subprocess.run([sys.executable, "app.py"], cwd=app, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"cdk synth failed:\n{proc.stderr[-3000:]}")
            stamp.write_text(wanted)
        return json.loads(template.read_text())


@dataclass(frozen=True)
class Physical:
    ref: str
    attributes: dict[str, str]


def physical(logical_id: str, resource_type: str) -> Physical:
    """Local names: the logical id (lower-cased for buckets), with ARNs in the emulator's account."""
    arn = f"arn:{PARTITION}:{{service}}:{REGION}:{ACCOUNT}:{{resource}}"
    if resource_type == "AWS::S3::Bucket":
        name = logical_id.lower()
        return Physical(name, {"Arn": f"arn:{PARTITION}:s3:::{name}"})
    if resource_type == "AWS::Lambda::Function":
        return Physical(logical_id, {"Arn": arn.format(service="lambda", resource=f"function:{logical_id}")})
    if resource_type == "AWS::SNS::Topic":
        topic = arn.format(service="sns", resource=logical_id)
        return Physical(topic, {"TopicArn": topic, "TopicName": logical_id})
    if resource_type == "AWS::StepFunctions::StateMachine":
        machine = arn.format(service="states", resource=f"stateMachine:{logical_id}")
        return Physical(machine, {"Arn": machine, "Name": logical_id})
    if resource_type == "AWS::Batch::JobDefinition":
        return Physical(arn.format(service="batch", resource=f"job-definition/{logical_id}:1"), {})
    if resource_type == "AWS::Batch::JobQueue":
        queue = arn.format(service="batch", resource=f"job-queue/{logical_id}")
        return Physical(queue, {"JobQueueArn": queue})
    if resource_type == "AWS::DynamoDB::Table":
        return Physical(logical_id, {"Arn": arn.format(service="dynamodb", resource=f"table/{logical_id}")})
    return Physical(logical_id, {"Arn": arn.format(service="local", resource=logical_id)})


class Resolver:
    """Turns intrinsic functions into the local values of the resources they name."""

    PSEUDO: ClassVar[dict[str, str]] = {"AWS::Partition": PARTITION, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
              "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": STACK}  # fmt: skip

    def __init__(self, template: dict[str, Any]) -> None:
        self.resources: dict[str, dict[str, Any]] = template["Resources"]
        self._physical = {lid: physical(lid, r["Type"]) for lid, r in self.resources.items()}

    def ref(self, logical_id: str) -> str:
        return self.PSEUDO.get(logical_id) or self._physical[logical_id].ref

    def get_att(self, logical_id: str, attribute: str) -> str:
        return self._physical[logical_id].attributes[attribute]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                return self.get_att(*(arg.split(".", 1) if isinstance(arg, str) else arg))
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(self.resolve(p)) for p in parts)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(index)]
            if key == "Fn::Sub":
                return self._sub(arg)
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub(self, arg: str | list[Any]) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            return self.get_att(*name.split(".", 1)) if "." in name else self.ref(name)

        return re.sub(r"\$\{([^}!]+)\}", replace, text)

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.resources.items() if r["Type"] == resource_type}

    def function_variables(self, logical_id: str) -> dict[str, str]:
        """A Lambda function's environment variables, resolved, as the strings Lambda gives them."""
        variables = self.resources[logical_id]["Properties"].get("Environment", {}).get("Variables", {})
        return {name: str(value) for name, value in self.resolve(variables).items()}
