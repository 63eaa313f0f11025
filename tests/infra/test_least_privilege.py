"""Least privilege over every policy in the synthesized template: identity, trust, key and resource policies.

cdk-nag (test_compliance.py) flags wildcards where someone must acknowledge them; this module pins what the
template may grant, so a new wildcard fails here with the policy that holds it, whatever its acknowledgement says.
API Gateway's AWS_IAM authorization on every non-OPTIONS method is asserted in
test_resources.py::test_api_uses_iam_auth_everywhere_and_validates_new_specs, not repeated here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

IDENTITY, TRUST, KEY, RESOURCE = "identity policy", "trust policy", "key policy", "resource policy"
ACCOUNT_ROOT = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":iam::", {"Ref": "AWS::AccountId"}, ":root"]]}
# Properties that hold a policy document; the walk must read each of them (see the coverage test).
POLICY_PROPERTIES = {"PolicyDocument", "Policies", "AssumeRolePolicyDocument", "KeyPolicy", "Policy"}

# Actions granted on Resource "*" on purpose. Each supports no resource-level permissions (its "Resource types"
# column in AWS's Service Authorization Reference is empty), so "*" is the only resource that works.
WILDCARD_RESOURCE_ACTIONS = {
    "xray:PutTraceSegments": "active tracing (Lambda, Step Functions) uploads segments; no resource-level permissions",
    "xray:PutTelemetryRecords": "active tracing reports daemon telemetry; no resource-level permissions",
    "xray:GetSamplingRules": "Step Functions tracing reads the account's sampling rules; no resource-level permissions",
    "xray:GetSamplingTargets": "Step Functions tracing asks for sampling quotas; no resource-level permissions",
    "batch:DescribeJobs": "the .sync Batch integration polls its job; DescribeJobs has no resource-level permissions",
    "ecr:GetAuthorizationToken": "the registry login token is account-wide; no resource-level permissions",
    # Step Functions execution logging is a vended-logs delivery; AWS's Step Functions guide grants this set on "*".
    "logs:CreateLogDelivery": "permission-only vended-logs action; no resource-level permissions",
    "logs:GetLogDelivery": "permission-only vended-logs action; no resource-level permissions",
    "logs:UpdateLogDelivery": "permission-only vended-logs action; no resource-level permissions",
    "logs:DeleteLogDelivery": "permission-only vended-logs action; no resource-level permissions",
    "logs:ListLogDeliveries": "permission-only vended-logs action; no resource-level permissions",
    "logs:PutResourcePolicy": "writes the account-level Logs resource policy for delivery; it names no log group",
    "logs:DescribeResourcePolicies": "lists the account-level Logs resource policies; it names no log group",
    "logs:DescribeLogGroups": "lists the account's log groups; it is never authorized against one log group",
}
# Data stores: a grant on "*" would reach every table, bucket, topic, queue and key in the account.
DATA_STORE_PREFIXES = ("dynamodb:", "s3:", "sqs:", "kms:", "sns:Publish")

# AWS-managed policies are not in the template, so they are pinned by name with why each is needed.
MANAGED_POLICIES = {
    "service-role/AmazonEC2ContainerServiceforEC2Role": "the documented ECS instance policy Batch's GPU hosts need "
    "(register with the cluster, ec2:DescribeTags, pull images); jobs cannot reach it (IMDS hop limit 1)",
    "service-role/AmazonAPIGatewayPushToCloudWatchLogs": "API Gateway's documented account role for execution "
    "logging; it can only create and write log groups",
}

# Condition keys that tie a service principal to this account or to one of this stack's resources.
SOURCE_KEYS = {"aws:sourcearn", "aws:sourceaccount", "aws:sourceorgid"}
# CloudWatch Logs encrypts with the key per log group and names it in the encryption context (AWS's documented
# way to scope logs.<region>.amazonaws.com in a key policy).
LOGS_CONTEXT_KEY = "kms:encryptioncontext:aws:logs:arn"


@dataclass(frozen=True)
class Statement:
    policy: str  # logical id of the resource that holds the policy
    kind: str
    body: dict[str, Any]

    @property
    def allows(self) -> bool:
        return self.body["Effect"] == "Allow"

    @property
    def actions(self) -> list[str]:
        return as_list(self.body.get("Action", []))

    @property
    def on_any_resource(self) -> bool:
        return "*" in as_list(self.body.get("Resource", []))

    @property
    def services(self) -> list[str]:
        principal = self.body.get("Principal", {})
        return [show(s) for s in as_list(principal.get("Service", []))] if isinstance(principal, dict) else []


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def arn_text(arn: Any) -> str:
    """An ARN with its tokens (partition, account) as placeholders: `arn:${Token}:iam::aws:policy/...`."""
    if isinstance(arn, dict) and "Fn::Join" in arn:
        return "".join(part if isinstance(part, str) else "${Token}" for part in arn["Fn::Join"][1])
    return show(arn)


def documents(logical_id: str, resource: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(holder, kind, policy document) for each policy a resource carries."""
    props = resource.get("Properties", {})
    if resource["Type"] == "AWS::IAM::Role":
        inline = [(f"{logical_id}/{p['PolicyName']}", IDENTITY, p["PolicyDocument"]) for p in props.get("Policies", [])]
        return [(logical_id, TRUST, props["AssumeRolePolicyDocument"]), *inline]
    if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        return [(logical_id, IDENTITY, props["PolicyDocument"])]
    if resource["Type"] == "AWS::KMS::Key":
        return [(logical_id, KEY, props["KeyPolicy"])]
    if resource["Type"] == "AWS::Lambda::Permission":
        return [(logical_id, RESOURCE, {"Statement": [lambda_permission_statement(props)]})]
    # Bucket, topic and queue policies, VPC endpoint policies, a REST API's Policy, Logs resource policies, ...
    found = [props[p] for p in ("PolicyDocument", "Policy") if p in props]
    return [(logical_id, RESOURCE, json.loads(d) if isinstance(d, str) else d) for d in found]


def lambda_permission_statement(props: dict[str, Any]) -> dict[str, Any]:
    """An AWS::Lambda::Permission as the statement Lambda adds to the function's resource policy."""
    principal = props["Principal"]
    conditions: dict[str, Any] = {}
    if "SourceArn" in props:
        conditions["ArnLike"] = {"aws:SourceArn": props["SourceArn"]}
    if "SourceAccount" in props:
        conditions["StringEquals"] = {"aws:SourceAccount": props["SourceAccount"]}
    return {
        "Effect": "Allow",
        "Action": props["Action"],
        "Principal": {"Service": principal} if str(principal).endswith(".amazonaws.com") else principal,
        "Resource": props["FunctionName"],
        **({"Condition": conditions} if conditions else {}),
    }


@pytest.fixture(scope="module")
def statements(synth) -> list[Statement]:
    return [
        Statement(holder, kind, body)
        for logical_id, resource in synth.resources.items()
        for holder, kind, document in documents(logical_id, resource)
        for body in as_list(document["Statement"])
    ]


def report(offenders: list[str], what_to_do: str) -> str:
    return "\n  ".join(["", *offenders]) + f"\n{what_to_do}"


def test_the_walk_reads_every_policy_in_the_template(synth, statements):
    holders = {s.policy.split("/")[0] for s in statements}
    with_policy = {
        logical_id
        for logical_id, resource in synth.resources.items()
        if POLICY_PROPERTIES & set(resource.get("Properties", {})) or resource["Type"] == "AWS::Lambda::Permission"
    }
    assert with_policy <= holders
    # Every kind is there: a walk that silently lost one would pass every test below.
    assert {s.kind for s in statements} == {IDENTITY, TRUST, KEY, RESOURCE}


def is_key_admin_delegation(statement: Statement) -> bool:
    """AWS's default key policy statement: kms:* for the account itself, which lets IAM policies grant the key.

    It grants no principal anything by itself; without it only principals named in the key policy could ever
    use or manage the key, and a key nobody can manage needs AWS Support to recover.
    """
    body = statement.body
    return statement.kind == KEY and body.get("Principal") == {"AWS": ACCOUNT_ROOT} and statement.actions == ["kms:*"]


def test_no_allow_grants_every_action_of_a_service(statements):
    offenders = [
        f"{s.policy} ({s.kind}): {s.actions or 'NotAction ' + show(s.body.get('NotAction'))}"
        for s in statements
        if s.allows
        and not is_key_admin_delegation(s)
        and ("NotAction" in s.body or any(a == "*" or a.split(":", 1)[1:] == ["*"] for a in s.actions))
    ]
    assert not offenders, report(offenders, "Name the actions the principal calls instead of '*' or 'service:*'.")


def test_no_allow_uses_not_resource_or_admits_anyone(statements):
    # NotResource grants everything but the named resources; an unconditioned Principal "*" admits every account.
    offenders = [
        f"{s.policy} ({s.kind}): {s.actions}"
        for s in statements
        if s.allows
        and ("NotResource" in s.body or (s.body.get("Principal") in ("*", {"AWS": "*"}) and "Condition" not in s.body))
    ]
    assert not offenders, report(offenders, "Name the principal and the resources the statement is for.")


def test_no_data_store_action_on_every_resource(statements):
    # In a KMS key policy, Resource "*" means "this key" and AWS accepts nothing else there: key policies are exempt.
    offenders = [
        f"{s.policy} ({s.kind}): {[a for a in s.actions if a.startswith(DATA_STORE_PREFIXES)]}"
        for s in statements
        if s.allows
        and s.kind != KEY
        and s.on_any_resource
        and any(a.startswith(DATA_STORE_PREFIXES) for a in s.actions)
    ]
    assert not offenders, report(offenders, "Grant data actions on the table, bucket prefix, topic, queue or key ARN.")


def test_every_wildcard_resource_is_an_allow_listed_action(statements):
    offenders = [
        f"{s.policy} ({s.kind}): {[a for a in s.actions if a not in WILDCARD_RESOURCE_ACTIONS]} on Resource '*'"
        for s in statements
        if s.allows and s.kind != KEY and s.on_any_resource and not set(s.actions) <= set(WILDCARD_RESOURCE_ACTIONS)
    ]
    assert not offenders, report(
        offenders,
        "Scope these actions to the ARNs they act on. Only if AWS's Service Authorization Reference lists no "
        "resource type for an action, add it to WILDCARD_RESOURCE_ACTIONS with that reason.",
    )


def test_the_wildcard_allow_list_is_exact(statements):
    used = {a for s in statements if s.allows and s.kind != KEY and s.on_any_resource for a in s.actions}
    assert not [a for a in WILDCARD_RESOURCE_ACTIONS if a.startswith(DATA_STORE_PREFIXES)]
    assert set(WILDCARD_RESOURCE_ACTIONS) <= used, (
        f"No longer granted on '*': {sorted(set(WILDCARD_RESOURCE_ACTIONS) - used)}; remove them from the list."
    )


def test_only_the_listed_aws_managed_policies_are_attached(synth):
    attached = {
        arn_text(arn).split(":policy/")[-1]
        for resource in synth.resources.values()
        for arn in resource.get("Properties", {}).get("ManagedPolicyArns", [])
    }
    assert attached == set(MANAGED_POLICIES), (
        "An AWS-managed policy's statements are not in the template, so this test cannot read them: attach one "
        "only after reading it, and add it to MANAGED_POLICIES with why its grants are needed."
    )


def test_buckets_refuse_every_request_without_tls(synth):
    # test_resources.py checks that each bucket has a TLS deny; this checks that the deny leaves no gap.
    for logical_id, policy in synth.of_type("AWS::S3::BucketPolicy").items():
        bucket_arn = {"Fn::GetAtt": [policy["Properties"]["Bucket"]["Ref"], "Arn"]}
        tls_denies = [
            s
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert [(s["Action"], s["Principal"], s["Resource"]) for s in tls_denies] == [
            ("s3:*", {"AWS": "*"}, [bucket_arn, {"Fn::Join": ["", [bucket_arn, "/*"]]}])
        ], logical_id


def unscoped_service_grants(statements: list[Statement]) -> set[tuple[str, str]]:
    """(policy, service) where a resource or key policy admits an AWS service acting for any account."""
    found = set()
    for s in statements:
        conditions = {key.lower() for keys in s.body.get("Condition", {}).values() for key in keys}
        if s.allows and s.kind in (RESOURCE, KEY) and not conditions & (SOURCE_KEYS | {LOGS_CONTEXT_KEY}):
            found.update((s.policy, service) for service in s.services)
    return found


def known_unscoped(synth) -> set[tuple[str, str]]:
    # CDK's events_targets.SnsTopic grants EventBridge sns:Publish on the topic, and the topic key's
    # Decrypt/GenerateDataKey*, with no aws:SourceArn or aws:SourceAccount (monitoring.py, the BatchJobFailed rule).
    topic = {"Ref": synth.logical_id(synth.stack.alerts.topic)}
    (topic_policy,) = [
        k for k, p in synth.of_type("AWS::SNS::TopicPolicy").items() if topic in p["Properties"]["Topics"]
    ]
    return {(topic_policy, "events.amazonaws.com"), (synth.logical_id(synth.stack.alerts.key), "events.amazonaws.com")}


def test_service_principals_are_tied_to_this_account(synth, statements):
    new = unscoped_service_grants(statements) - known_unscoped(synth)
    assert not new, report(
        [f"{policy}: {service}" for policy, service in sorted(new)],
        "Add an aws:SourceArn (the calling resource) or aws:SourceAccount condition to the statement.",
    )


def test_eventbridge_grants_on_the_alert_topic_are_tied_to_this_account(synth, statements):
    assert not unscoped_service_grants(statements) & known_unscoped(synth)


def test_inputs_are_read_only_and_listed_only_under_their_prefix(statements):
    """Test sets and clips under inputs/: the API, CreateRecord and jobs read them; nobody writes there."""
    on_inputs = [s for s in statements if s.allows and "inputs/*" in show(s.body.get("Resource"))]
    assert on_inputs and all(s.actions == ["s3:GetObject"] for s in on_inputs)
    readers = {s.policy for s in on_inputs}
    assert len(readers) == 3 and all(("Api" in r or "CreateRecord" in r or "Job" in r) for r in readers), readers
    listings = [s for s in statements if "s3:ListBucket" in s.actions and s.policy in readers]
    conditioned = [s for s in listings if s.body.get("Condition")]
    assert {s.policy for s in conditioned} == readers
    assert all(s.body["Condition"] == {"StringLike": {"s3:prefix": ["inputs/*"]}} for s in conditioned)


def test_codec_packages_are_read_only_under_their_prefix(statements):
    """Codec packages under codecs/: the API and CreateRecord read codec.json, jobs download them; nobody writes."""
    on_codecs = [s for s in statements if s.allows and "codecs/*" in show(s.body.get("Resource"))]
    assert on_codecs and all(s.actions == ["s3:GetObject"] for s in on_codecs)
    readers = {s.policy for s in on_codecs}
    assert len(readers) == 3 and all(("Api" in r or "CreateRecord" in r or "Job" in r) for r in readers), readers
