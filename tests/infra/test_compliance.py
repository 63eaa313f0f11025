"""cdk-nag (AwsSolutions) and cfn-lint on the synthesized stack: nothing unacknowledged, nothing to lint."""

from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import Validations
from aws_cdk.assertions import Annotations, Match
from cfnlint.api import ManualArgs, lint_file

NAG_PREFIX = "AwsSolutions::"
MIN_REASON = 60


def nag_report(outdir: Path) -> dict:
    report = json.loads((outdir / "validation-report.json").read_text())
    (nag,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    return nag


def acknowledgements(synth) -> dict[tuple[str, str], str]:
    """(construct path, acknowledged id) -> reason, for every AwsSolutions acknowledgement in the app."""
    found = {}
    for construct in synth.app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                found.update(
                    {
                        (construct.node.path, rule): reason
                        for rule, reason in entry.data.items()
                        if rule.startswith(NAG_PREFIX)
                    }
                )
    return found


def test_no_unacknowledged_nag_findings(synth):
    report = nag_report(synth.outdir)
    assert report["violations"] == []
    annotations = Annotations.from_stack(synth.stack)
    assert annotations.find_error("*", Match.string_like_regexp("AwsSolutions-.*")) == []
    assert annotations.find_warning("*", Match.string_like_regexp("AwsSolutions-.*")) == []


def test_every_acknowledgement_is_used_and_explained(synth):
    acknowledged = acknowledgements(synth)
    used = {(v["acknowledgedAt"], v["acknowledgedId"]) for v in nag_report(synth.outdir)["suppressedViolations"]}
    assert set(acknowledged) == used, "an acknowledgement matches no finding (stale) or a finding was missed"
    for (path, rule), reason in acknowledged.items():
        assert len(reason) >= MIN_REASON, f"{rule} at {path}: the reason is too thin to audit"


def test_cfn_lint_finds_nothing(synth):
    template = synth.outdir / f"{synth.stack.artifact_id}.template.json"
    matches = lint_file(template, config=ManualArgs(ignore_checks=["W3005"]))
    assert [str(m) for m in matches] == []
