"""The project's own template.yaml and ASL deploy locally, and every handler imports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from accessctl_local import LocalStack
from accessctl_local.sam import load_template

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SAM = load_template(PROJECT_ROOT / "template.yaml")
FUNCTIONS = [lid for lid, r in SAM["Resources"].items() if r["Type"] == "AWS::Serverless::Function"]


# Every optional part on, so every template resource deploys.
OPTIONAL_PARTS = {"AuditExport": "true", "AuditRetentionDays": "30"}


@pytest.fixture(scope="module")
def real_stack() -> Iterator[LocalStack]:
    with LocalStack.start(PROJECT_ROOT, parameter_overrides=OPTIONAL_PARTS, run_schedules=False) as running:
        yield running


def test_every_template_resource_is_deployed(real_stack: LocalStack) -> None:
    # Given the SAM template's own resources (before translation)
    # Then each exists locally (serverless ones under their translated logical ids)
    deployed = real_stack.resources
    for logical_id, resource in SAM["Resources"].items():
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            assert any(k.startswith(logical_id) for k in deployed), logical_id
        else:
            assert logical_id in deployed, logical_id
    assert set(SAM["Outputs"]) <= set(real_stack.outputs)


def test_the_state_machine_has_every_substitution_resolved(real_stack: LocalStack) -> None:
    described = real_stack.client("stepfunctions").describe_state_machine(
        stateMachineArn=real_stack.outputs["StateMachineArn"]
    )
    assert "${" not in described["definition"]
    tasks = [s for s in json.loads(described["definition"])["States"].values() if s["Type"] == "Task"]
    arns = {t["Parameters"]["FunctionName"] for t in tasks}
    assert arns <= {f.function_arn for f in real_stack.functions.values()}


def test_api_routes_and_schedule_come_from_the_template(real_stack: LocalStack) -> None:
    assert real_stack.api is not None and real_stack.scheduler is not None
    routes = {(r.method, r.resource) for r in real_stack.api.routes}
    expected = {
        (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
        for resource in SAM["Resources"].values()
        for event in resource.get("Properties", {}).get("Events", {}).values()
        if event["Type"] == "Api"
    }
    assert routes == expected
    # Every route is SigV4-authorised unless the template gives it its own scheme (Authorizer: NONE).
    own_scheme = {
        (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
        for resource in SAM["Resources"].values()
        for event in resource.get("Properties", {}).get("Events", {}).values()
        if event["Type"] == "Api" and event["Properties"].get("Auth", {}).get("Authorizer") == "NONE"
    }
    assert {(r.method, r.resource) for r in real_stack.api.routes if not r.iam_auth} == own_scheme
    assert sorted(s.expression for s in real_stack.scheduler.schedules) == sorted(_template_schedules())


def _template_schedules() -> list[str]:
    """Every ScheduleV2 event's expression, parameter references resolved to their defaults."""
    expressions = []
    for resource in SAM["Resources"].values():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event["Type"] == "ScheduleV2":
                expression = event["Properties"]["ScheduleExpression"]
                if isinstance(expression, dict):
                    expression = SAM["Parameters"][expression["Ref"]]["Default"]
                expressions.append(expression)
    return expressions


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_every_handler_imports_in_process(real_stack: LocalStack, logical_id: str) -> None:
    spec = real_stack.functions.get(logical_id)
    if spec is None or not (spec.code_dir / "app.py").exists():
        pytest.skip(f"{logical_id} has no code yet")
    assert callable(real_stack.runtime._handler(spec))  # type: ignore[union-attr]


def test_the_audit_export_bucket_is_locked_versioned_private_and_tls_only(real_stack: LocalStack) -> None:
    s3 = real_stack.client("s3")
    bucket = real_stack.outputs["AuditExportBucketName"]

    lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert lock["Rule"]["DefaultRetention"]["Mode"] == SAM["Parameters"]["AuditExportLockMode"]["Default"]
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    # The TLS-only policy is deployed as written (its conditional Deny is not put on moto's bucket)
    assert real_stack.deployment is not None
    policy = real_stack.deployment.resources["AuditExportBucketPolicy"].properties
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert policy["Bucket"] == bucket and statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_daily_export_anchors_yesterday_and_verify_finds_its_stream_deleted(real_stack: LocalStack) -> None:
    from datetime import UTC, datetime, timedelta

    from accessctl.audit import AuditChain, event_item, link_key, verify
    from accessctl.audit_export import load_manifests
    from accessctl.models import AuditEvent, AuditEventType

    # Given records written yesterday, through the deployed table with the deployed retention
    table = (
        real_stack.session()
        .resource("dynamodb", endpoint_url=real_stack.endpoint_url)
        .Table(real_stack.resources["AuditTable"])
    )
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    chain = AuditChain(table.meta.client, table.name, typed=False, retention_days=30)
    written = [
        chain.append(
            [
                event_item(
                    AuditEvent(
                        event_id=f"e-{n}",
                        event_type=AuditEventType.REQUEST_SUBMITTED,
                        at=f"{yesterday}T12:00:0{n}.000000Z",
                        subject="req-local",
                        actor="tester",
                    )
                )
            ]
        )[0]
        for n in range(3)
    ]

    # When the daily schedule fires
    invocation = real_stack.fire_schedule("ExportAuditFunction")

    # Then yesterday is exported with its stream head, and the export is audited
    assert not invocation.errored, invocation.payload
    s3 = real_stack.client("s3")
    bucket = real_stack.outputs["AuditExportBucketName"]
    manifests = load_manifests(s3, bucket, [yesterday])
    stream = written[0]["stream"]
    assert manifests[yesterday].streams[stream].head_hash == written[-1]["record_hash"]
    exported = table.query(
        KeyConditionExpression="subject = :s", ExpressionAttributeValues={":s": f"audit-export/{yesterday}"}
    )["Items"]
    assert [item["event_type"] for item in exported] == ["AUDIT_EXPORTED"]
    # And once the stream and its links are deleted, only the anchored verify notices
    for item in written:
        table.delete_item(Key={"subject": item["subject"], "event_key": item["event_key"]})
        table.delete_item(Key=link_key(stream, int(item["sequence"])))
    assert verify(table, yesterday, yesterday).ok
    anchored = verify(table, yesterday, yesterday, anchors=manifests)
    assert anchored.first_break is not None and anchored.first_break.kind == "anchor"
