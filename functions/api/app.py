"""The signed REST API: submit and read access requests, list and revoke grants.

API Gateway authorises every route with AWS_IAM (SigV4); the caller is read from the verified
request context only. Bodies and query strings are validated by the resolver (pydantic).
"""

from datetime import UTC, datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field, ValidationError

from accessctl import audit_query
from accessctl.access_requests import (
    get_request,
    idempotency_config,
    list_grants,
    revoke_early,
    submit_for_person,
    submit_request,
)
from accessctl.audit import VerifyReport, days_between, verify
from accessctl.audit_export import load_manifests
from accessctl.audit_query import AccessAnswer, AuditFilter, AuditPage
from accessctl.audit_verification import Verification, get_verification, start_verification
from accessctl.aws import client
from accessctl.dependencies import default_dependencies
from accessctl.errors import AccessctlError, BadRequestError, ForbiddenError
from accessctl.id_tokens import ID_TOKEN_HEADER, verify_id_token
from accessctl.models import (
    DATABASE_ID_PATTERN,
    REQUEST_ID_PATTERN,
    AccessRequestSubmission,
    AuditEventType,
    Caller,
    GrantList,
    GrantView,
    RequestView,
    SubmissionAnswer,
    utc_now,
)
from accessctl.observability import logger, metrics, tracer
from accessctl.principals import caller_from_identity, resolve_caller

ROLE_ARN_PATTERN = r"^arn:(aws|aws-cn|aws-us-gov):iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$"

app = APIGatewayRestResolver(enable_validation=True)


def openapi_schema() -> str:
    """The OpenAPI document of this API (committed as docs/openapi.json, checked for drift)."""
    return app.get_openapi_json_schema(
        title="accessctl API",
        version="1.0.0",
        summary="Just-in-time, expiring IAM access to Amazon RDS databases",
        description=(
            "Every route is authorised by API Gateway with AWS_IAM: sign requests with SigV4 "
            "(service execute-api). The caller's identity is taken from the signature only."
        ),
        security_schemes={
            "sigv4": APIKey(
                name="Authorization",
                in_=APIKeyIn.header,
                description="AWS Signature Version 4 (API Gateway AWS_IAM authorisation)",
            )
        },
        security=[{"sigv4": []}],
    )


def current_caller() -> Caller:
    deps = default_dependencies()
    identity = app.current_event.raw_event.get("requestContext", {}).get("identity")
    caller = caller_from_identity(identity, deps.settings.admins)
    return resolve_caller(
        caller,
        deps.iam,
        account_id=deps.account_id,
        admins=deps.settings.admins,
        opt_in_tag_key=deps.settings.opt_in_tag_key,
    )


@app.post("/requests", summary="Request access to a database", responses={202: {"description": "Accepted"}})
def post_request(submission: AccessRequestSubmission) -> Response[SubmissionAnswer]:
    deps = default_dependencies()
    raw_token = app.current_event.get_header_value(name=ID_TOKEN_HEADER, case_sensitive=False)
    id_token = verify_id_token(raw_token, deps.settings, utc_now())
    caller = current_caller()
    if submission.on_behalf_of is None:
        answer = submit_request(submission, caller, deps, id_token=id_token)
    else:
        answer = submit_for_person(submission, submission.on_behalf_of, caller, deps)
    return Response(status_code=202, body=answer, content_type="application/json")


@app.get("/requests/<request_id>", summary="Read a request, its decision and its grant")
def read_request(request_id: Annotated[str, Path(pattern=REQUEST_ID_PATTERN)]) -> RequestView:
    return get_request(request_id, current_caller(), default_dependencies())


@app.get("/grants", summary="List grants (your own, or anyone's for an admin)")
def read_grants(
    principal: Annotated[str | None, Query(pattern=ROLE_ARN_PATTERN, max_length=2048, description="Role ARN")] = None,
    database: Annotated[str | None, Query(pattern=DATABASE_ID_PATTERN)] = None,
    active: Annotated[bool, Query()] = True,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> GrantList:
    return list_grants(
        current_caller(),
        default_dependencies(),
        role_arn=principal,
        database=database,
        active_only=active,
        next_token=next_token,
    )


@app.delete("/grants/<grant_id>", summary="Revoke a grant now")
def delete_grant(grant_id: Annotated[str, Path(pattern=REQUEST_ID_PATTERN)]) -> GrantView:
    return revoke_early(grant_id, current_caller(), default_dependencies())


def utc_now_dt() -> datetime:
    return datetime.now(UTC)


def _admin_audit_table() -> Any:
    """The audit table, for an admin caller only (403 otherwise)."""
    if not current_caller().is_admin:
        raise ForbiddenError("only admins may read the audit log")
    return default_dependencies().audit.table


@app.get("/audit", summary="Query the audit log (admins only)")
def read_audit(
    since: Annotated[str | None, Query(max_length=40, description="ISO 8601 instant")] = None,
    until: Annotated[str | None, Query(max_length=40, description="ISO 8601 instant")] = None,
    subject: Annotated[str | None, Query(max_length=512, description="Request id or resource")] = None,
    principal: Annotated[str | None, Query(max_length=2048, description="Principal ARN")] = None,
    requester: Annotated[
        str | None, Query(max_length=2048, description="Who asked: a company identity (email) or a role ARN")
    ] = None,
    database: Annotated[str | None, Query(pattern=DATABASE_ID_PATTERN)] = None,
    event_type: Annotated[AuditEventType | None, Query(alias="type")] = None,
    outcome: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    next_token: Annotated[str | None, Query(max_length=4096)] = None,
) -> AuditPage:
    table = _admin_audit_table()
    try:
        flt = AuditFilter(
            since=since,
            until=until,
            subject=subject,
            principal_arn=principal,
            requester=requester,
            database=database,
            event_type=event_type,
            outcome=outcome,
            limit=limit,
        )
    except ValidationError as error:
        raise BadRequestError(str(error.errors()[0]["msg"])) from error
    return audit_query.query(table, flt, next_token)


@app.get("/audit/access", summary="Who had access to a database between two instants (admins only)")
def read_audit_access(
    database: Annotated[str, Query(pattern=DATABASE_ID_PATTERN)],
    since: Annotated[str, Query(alias="from", max_length=40, description="ISO 8601 instant")],
    until: Annotated[str, Query(alias="to", max_length=40, description="ISO 8601 instant")],
) -> AccessAnswer:
    return audit_query.access_between(_admin_audit_table(), database, since, until)


def _verify_range(since: str | None, until: str | None) -> tuple[str, str]:
    bounds = AuditFilter(since=since, until=until)  # normalised (400 on a malformed instant)
    end = bounds.until or audit_query.iso(utc_now_dt())
    start = bounds.since or end  # default: the streams of the day of `until`
    if start > end:
        raise BadRequestError("since is after until")
    return start, end


@app.get("/audit/verify", summary="Verify the audit hash chain over a time range (admins only)")
def read_audit_verify(
    since: Annotated[str | None, Query(max_length=40, description="ISO 8601 instant")] = None,
    until: Annotated[str | None, Query(max_length=40, description="ISO 8601 instant")] = None,
    anchored: Annotated[
        bool, Query(description="Also compare each exported day with its manifest in the audit export bucket")
    ] = False,
) -> VerifyReport:
    table = _admin_audit_table()
    start, end = _verify_range(since, until)
    if not anchored:
        return verify(table, start, end)
    bucket = default_dependencies().settings.audit_export_bucket
    if bucket is None:
        raise BadRequestError("anchored verification needs the audit export (AuditExport=true)")
    return verify(table, start, end, anchors=load_manifests(client("s3"), bucket, days_between(start, end)))


class VerificationRequest(BaseModel):
    since: str | None = Field(default=None, max_length=40, description="ISO 8601 instant")
    until: str | None = Field(default=None, max_length=40, description="ISO 8601 instant")
    anchored: bool = False


@app.post(
    "/audit/verifications",
    summary="Start verifying the audit hash chain over a long range, asynchronously (admins only)",
    responses={202: {"description": "Accepted"}},
)
def post_audit_verification(body: VerificationRequest) -> Response[Verification]:
    _admin_audit_table()
    start, end = _verify_range(body.since, body.until)
    started = start_verification(start, end, body.anchored, current_caller().principal_arn, default_dependencies())
    return Response(status_code=202, body=started, content_type="application/json")


@app.get("/audit/verifications/<verification_id>", summary="An asynchronous verification and its report (admins only)")
def read_audit_verification(verification_id: Annotated[str, Path(pattern=REQUEST_ID_PATTERN)]) -> Verification:
    _admin_audit_table()
    return get_verification(verification_id, default_dependencies())


@app.exception_handler(AccessctlError)
def handle_domain_error(error: AccessctlError) -> Response[Any]:
    return Response(status_code=error.status_code, content_type="application/json", body={"message": str(error)})


@app.exception_handler(IdempotencyValidationError)
def handle_reused_key(error: IdempotencyValidationError) -> Response[Any]:
    return Response(
        status_code=409,
        content_type="application/json",
        body={"message": "this idempotency key was already used for a different request"},
    )


@app.exception_handler(IdempotencyAlreadyInProgressError)
def handle_in_progress(error: IdempotencyAlreadyInProgressError) -> Response[Any]:
    return Response(
        status_code=409,
        content_type="application/json",
        body={"message": "the same request is being submitted right now; retry shortly"},
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency_config.register_lambda_context(context)
    return app.resolve(event, context)
