"""Use cases behind the API: submit a request, read it, list grants, revoke early.

Submission is idempotent: the same caller with the same idempotency key (or, without a key,
the same request within the idempotency window) gets the same request id, and the workflow
is started with the request id as its execution name, so one request is one execution.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from botocore.exceptions import ClientError

from accessctl.aws import call, error_code
from accessctl.dependencies import Dependencies
from accessctl.errors import ForbiddenError, NotFoundError, TransientError
from accessctl.identity import caller_for_directory_role, configured_directory, requester_for_bot
from accessctl.models import (
    AccessRequest,
    AccessRequestSubmission,
    AuditEventType,
    Caller,
    GrantList,
    GrantView,
    Requester,
    RequestOrigin,
    RequestStatus,
    RequestView,
    RevokeReason,
    SubmissionAnswer,
    WorkflowInput,
    to_iso,
    utc_now,
)
from accessctl.observability import correlate, logger, metrics
from accessctl.signals.oidc import VerifiedIdToken

IDEMPOTENCY_WINDOW_SECONDS = 3600

# The key is the caller plus their idempotency key, or the caller plus the whole request when
# they sent none. The fingerprint is validated, so a key reused for a different request is refused.
idempotency_config = IdempotencyConfig(
    event_key_jmespath="[principal_arn, idempotency_key || fingerprint]",
    payload_validation_jmespath="fingerprint",
    expires_after_seconds=IDEMPOTENCY_WINDOW_SECONDS,
    raise_on_no_idempotency_key=True,
)


def submission_fingerprint(submission: AccessRequestSubmission) -> str:
    fields = submission.model_dump(mode="json", exclude={"idempotency_key"})
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


@cache
def idempotency_store(table_name: str) -> DynamoDBPersistenceLayer:
    return DynamoDBPersistenceLayer(table_name=table_name)


def submit_request(
    submission: AccessRequestSubmission,
    caller: Caller,
    deps: Dependencies,
    id_token: VerifiedIdToken | None = None,
    requester: Requester | None = None,
    origin: RequestOrigin = RequestOrigin.API,
) -> SubmissionAnswer:
    """Check who is asking, then submit once (idempotently) and start the workflow.

    ``caller`` is the principal that receives the grant: the signer for API requests, or the
    directory role of ``requester`` for requests relayed by Slack or a chat-ops bot.
    """
    role_arn = _grantable_role_arn(caller, deps)
    if deps.settings.idempotency_table is None:
        return _submit(submission, caller, role_arn, deps, id_token, requester, origin)
    # One person through one relay is one idempotency scope; a signed caller is its own.
    scope = f"{origin.value}:{requester.identity}" if requester is not None else caller.principal_arn
    submit_once = idempotent_function(
        data_keyword_argument="idempotency_data",
        config=idempotency_config,
        persistence_store=idempotency_store(deps.settings.idempotency_table),
        output_serializer=None,
    )(_submit_idempotently)
    answer: dict[str, Any] = submit_once(
        idempotency_data={
            "principal_arn": scope,
            "idempotency_key": submission.idempotency_key,
            "fingerprint": submission_fingerprint(submission),
        },
        submission=submission,
        caller=caller,
        role_arn=role_arn,
        deps=deps,
        id_token=id_token,
        requester=requester,
        origin=origin,
    )
    return SubmissionAnswer.model_validate(answer)


def _submit_idempotently(
    idempotency_data: dict[str, Any],
    submission: AccessRequestSubmission,
    caller: Caller,
    role_arn: str,
    deps: Dependencies,
    id_token: VerifiedIdToken | None,
    requester: Requester | None,
    origin: RequestOrigin,
) -> dict[str, Any]:
    return _submit(submission, caller, role_arn, deps, id_token, requester, origin).model_dump(mode="json")


def _submit(
    submission: AccessRequestSubmission,
    caller: Caller,
    role_arn: str,
    deps: Dependencies,
    id_token: VerifiedIdToken | None,
    requester: Requester | None = None,
    origin: RequestOrigin = RequestOrigin.API,
) -> SubmissionAnswer:
    assert caller.role_name is not None  # checked by _grantable_role_arn
    request_id = str(uuid.uuid4())
    request = AccessRequest(
        request_id=request_id,
        status=RequestStatus.PENDING,
        principal_arn=caller.principal_arn,
        role_name=caller.role_name,
        role_arn=role_arn,
        account_id=caller.account_id,
        database=submission.database,
        db_user=submission.db_user,
        requested_minutes=submission.duration_minutes,
        reason=submission.reason,
        requested_at=to_iso(utc_now()),
        source_ip=caller.source_ip,
        id_token=id_token.model_dump(mode="json") if id_token else None,
        origin=origin,
        requester=requester,
        # Named before it starts: every record of the request, this one's first, links to its workflow.
        execution_arn=execution_arn_for(deps.settings.state_machine_arn, request_id),
    )
    deps.grants.create(request)
    correlate(request.request_id)
    try:
        deps.audit.append(
            AuditEventType.REQUEST_SUBMITTED,
            subject=request.request_id,
            actor=_submitter(caller, requester),
            request=request,
            reason=request.reason,
            details={"requested_minutes": request.requested_minutes, "source_ip": caller.source_ip},
        )
    except Exception:
        # Unaudited, so never started: the request ends FAILED (the caller gets an error and retries).
        deps.grants.record_status(
            request.request_id,
            RequestStatus.FAILED,
            failure="its audit record could not be written; nothing was granted",
        )
        raise
    workflow_input = WorkflowInput(
        request_id=request.request_id,
        principal_arn=request.principal_arn,
        role_name=request.role_name,
        database=request.database,
        db_user=request.db_user,
        requested_minutes=request.requested_minutes,
    )
    try:
        execution = call(
            deps.sfn.start_execution,
            stateMachineArn=deps.settings.state_machine_arn,
            name=request.request_id,
            input=workflow_input.model_dump_json(),
        )
    except (ClientError, TransientError) as error:
        # Nothing was granted; the request is recorded as failed so it is never left pending.
        failure = f"the workflow could not be started: {error}"
        deps.grants.record_status(request.request_id, RequestStatus.FAILED, failure=failure)
        deps.audit.append(
            AuditEventType.REQUEST_FAILED, subject=request.request_id, actor="api", request=request, reason=failure
        )
        raise TransientError("the request could not be started; nothing was granted, please retry") from error
    deps.grants.set_execution(request.request_id, execution["executionArn"])
    metrics.add_metric(name="RequestsSubmitted", unit="Count", value=1)
    logger.info("request submitted", extra={"request_id": request.request_id, "database": request.database})
    return SubmissionAnswer(
        request_id=request.request_id, status=RequestStatus.PENDING, execution_arn=execution["executionArn"]
    )


def execution_arn_for(state_machine_arn: str | None, name: str) -> str | None:
    """The ARN Step Functions gives the execution ``name`` of ``state_machine_arn`` (the request id)."""
    if not state_machine_arn or ":stateMachine:" not in state_machine_arn:
        return None
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{name}"


def submit_for_person(
    submission: AccessRequestSubmission, person: str, bot: Caller, deps: Dependencies
) -> SubmissionAnswer:
    """An allow-listed chat-ops bot asks for a named person: that person's directory role gets the grant."""
    settings = deps.settings
    requester, entry = requester_for_bot(
        bot, person, settings.chatops_bots, lambda: configured_directory(settings.people_directory_parameter)
    )
    grantee = caller_for_directory_role(
        entry, deps.iam, account_id=deps.account_id, opt_in_tag_key=deps.settings.opt_in_tag_key
    )
    return submit_request(submission, grantee, deps, requester=requester, origin=RequestOrigin.CHATOPS_BOT)


def _submitter(caller: Caller, requester: Requester | None) -> str:
    """Who made the request: the signer, the chat-ops bot, or the Slack member."""
    if requester is None:
        return caller.principal_arn
    if requester.via:
        return requester.via
    if requester.slack:
        return f"slack:{requester.slack.team_id}/{requester.slack.user_id}"
    return requester.identity


def _grantable_role_arn(caller: Caller, deps: Dependencies) -> str:
    """The caller's role ARN, if that role may receive grants here (see principals.resolve_caller)."""
    if caller.account_id != deps.account_id:
        raise ForbiddenError(f"principals of account {caller.account_id} cannot receive grants here")
    if caller.role_name is None or caller.role_arn is None:
        raise ForbiddenError("grants attach to IAM roles: sign the request with a role's credentials")
    if not caller.opted_in:
        raise ForbiddenError(
            f"role {caller.role_name} is not enabled for accessctl "
            f"(it needs the tag {deps.settings.opt_in_tag_key}=true)"
        )
    return caller.role_arn


def get_request(request_id: str, caller: Caller, deps: Dependencies) -> RequestView:
    request = _visible_request(request_id, caller, deps)
    return RequestView.of(request)


def list_grants(
    caller: Caller,
    deps: Dependencies,
    *,
    role_arn: str | None,
    database: str | None,
    active_only: bool,
    next_token: str | None,
) -> GrantList:
    """Grants visible to the caller: their own role's, or anyone's for an admin."""
    if not caller.is_admin:
        if role_arn is not None and role_arn != caller.role_arn:
            raise ForbiddenError("only admins may list other principals' grants")
        if caller.role_arn is None:
            raise ForbiddenError("grants belong to IAM roles: sign the request with a role's credentials")
        role_arn = caller.role_arn
    requests, token = deps.grants.list_requests(
        role_arn=role_arn, database=database, active_only=active_only, next_token=next_token
    )
    return GrantList(grants=[_grant_view(request) for request in requests if request.grant], next_token=token)


def revoke_early(grant_id: str, caller: Caller, deps: Dependencies) -> GrantView:
    """Revoke a grant now, on behalf of its holder or an admin, through the revoke function."""
    request = _visible_request(grant_id, caller, deps)
    if request.grant is None:
        raise NotFoundError(f"request {grant_id} has no grant")
    payload = {"request_id": grant_id, "reason": RevokeReason.EARLY.value, "actor": caller.principal_arn}
    response = call(
        deps.lambda_client.invoke,
        FunctionName=deps.settings.revoke_function_name,
        InvocationType="RequestResponse",
        Payload=json.dumps(payload).encode(),
    )
    answer = json.loads(response["Payload"].read() or b"{}")
    if response.get("FunctionError"):
        logger.error("early revoke failed", extra={"request_id": grant_id, "error": answer})
        why = (
            f"{answer.get('errorType', 'Error')}: {answer.get('errorMessage', '')}" if isinstance(answer, dict) else ""
        )
        if deps.grants.get(grant_id).status != RequestStatus.REVOKED:  # not: revoked, then stopping its workflow failed
            deps.audit.append(
                AuditEventType.REVOKE_FAILED,
                subject=grant_id,
                actor=caller.principal_arn,
                request=request,
                reason=why[:1000] or "the revoke function failed",
                details={"revoke_reason": RevokeReason.EARLY.value},
            )
            metrics.add_metric(name="RevocationFailures", unit="Count", value=1)
        raise TransientError("the grant could not be revoked right now; the sweeper will retry, please retry too")
    return _grant_view(deps.grants.get(grant_id))


def _visible_request(request_id: str, caller: Caller, deps: Dependencies) -> AccessRequest:
    correlate(request_id)
    try:
        request = deps.grants.get(request_id)
    except NotFoundError:
        raise NotFoundError(f"request {request_id} not found") from None
    if not (caller.is_admin or (caller.role_arn is not None and caller.role_arn == request.role_arn)):
        # Same answer as a missing request: other principals' request ids are not confirmed.
        raise NotFoundError(f"request {request_id} not found")
    return request


def _grant_view(request: AccessRequest) -> GrantView:
    assert request.grant is not None
    return GrantView(
        grant_id=request.grant.grant_id,
        status=request.status,
        principal_arn=request.principal_arn,
        role_name=request.role_name,
        database=request.database,
        db_user=request.db_user,
        expires_at=request.grant.expires_at,
        policy_arn=request.grant.policy_arn,
        revoked_at=request.grant.revoked_at,
        revoke_reason=request.grant.revoke_reason,
    )


def stop_execution(execution_arn: str | None, deps: Dependencies, cause: str) -> None:
    """Stop a workflow whose grant was revoked early; an already-finished one is fine."""
    if not execution_arn:
        return
    try:
        call(deps.sfn.stop_execution, executionArn=execution_arn, error="GrantRevoked", cause=cause[:256])
    except ClientError as error:
        if error_code(error) not in ("ExecutionDoesNotExist", "ExecutionNotRunning", "ValidationException"):
            raise
