"""What the use cases need, built once per process from the settings (tests build their own)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from accessctl.approvals import ApprovalsStore
from accessctl.audit import AuditLog
from accessctl.aws import call, client, resource
from accessctl.config import Settings, get_settings
from accessctl.models import AccessRequest
from accessctl.sessions import SessionTermination, default_session_terminator
from accessctl.signals.posture import PostureStore
from accessctl.store import GrantsStore


@dataclass(frozen=True)
class Dependencies:
    settings: Settings
    grants: GrantsStore
    audit: AuditLog
    iam: Any
    rds: Any
    sfn: Any
    lambda_client: Any
    sns: Any
    region: str
    account_id: str
    partition: str
    posture: PostureStore | None = None  # device posture, when the webhook is deployed
    # Ends the db user's open sessions at revocation (accessctl.sessions); None: IAM revocation only.
    session_terminator: Callable[[AccessRequest], SessionTermination] | None = None
    approvals: ApprovalsStore | None = None  # pending approvals and their task tokens (chat-ops table)


@cache
def default_dependencies() -> Dependencies:
    settings = get_settings()
    dynamodb = resource("dynamodb")
    identity = call(client("sts").get_caller_identity)
    partition = identity["Arn"].split(":")[1]
    grants = GrantsStore(dynamodb.Table(settings.grants_table))
    return Dependencies(
        settings=settings,
        grants=grants,
        audit=AuditLog(dynamodb.Table(settings.audit_table)),
        iam=client("iam"),
        rds=client("rds"),
        sfn=client("stepfunctions"),
        lambda_client=client("lambda"),
        sns=client("sns"),
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        account_id=identity["Account"],
        partition=partition,
        posture=PostureStore(dynamodb.Table(settings.posture_table)) if settings.posture_table else None,
        session_terminator=default_session_terminator(client("rds"), grants),
        approvals=ApprovalsStore(dynamodb.Table(settings.approvals_table)) if settings.approvals_table else None,
    )
