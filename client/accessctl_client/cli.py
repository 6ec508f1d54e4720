"""The ``accessctl`` command line.

Exit codes: 0 granted/ok, 1 usage or other error, 2 denied, 3 failed or revoked, 4 timed out waiting.
``audit verify-export`` is for auditors' scripts and has its own: 0 ok, 1 a break, 2 usage or access error.
Results go to stdout (JSON with ``--json``); errors, and progress when stderr is a terminal, go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any, NoReturn

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError

from .client import AccessctlClient, __version__
from .duration import parse_duration
from .errors import AccessctlError, WaitTimeoutError
from .export_check import EXPORT_PREFIX, ExportAccessError, ExportReport, verify_export
from .models import DENIED, FAILED, GRANTED_STATUSES, REVOKED, GrantRecord, RequestView

EXIT_OK, EXIT_ERROR, EXIT_DENIED, EXIT_FAILED, EXIT_TIMEOUT = 0, 1, 2, 3, 4
# `audit verify-export`: 1 means "the export does not verify", so not checking at all must differ.
EXIT_EXPORT_BROKEN, EXIT_EXPORT_UNCHECKED = 1, 2
EXPORT_COMMAND = "verify-export"
MAX_EXPORT_DAYS = 3660
PRINT_CHOICES = ("token", "url", "env", "json")


class _Parser(argparse.ArgumentParser):
    # argparse exits 2 on usage errors, which would read as "denied": usage errors are 1 here
    # (``usage_exit``), except for `audit verify-export`, whose 1 means a break.
    def __init__(self, *args: Any, usage_exit: int = EXIT_ERROR, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.usage_exit = usage_exit

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(self.usage_exit, f"{self.prog}: error: {message}\n")


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}: a positive number of seconds")
    return value


def _day(text: str) -> date:
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"invalid day {text!r}: expected YYYY-MM-DD")


def _common_options(in_subcommand: bool) -> _Parser:
    # Shared options are accepted before and after the subcommand. In subcommands their default is
    # SUPPRESS so that an option given before the subcommand is not overwritten by the subcommand's default.
    parent = _Parser(add_help=False)
    unset: Any = argparse.SUPPRESS if in_subcommand else None
    parent.add_argument("--api-url", default=unset, help="API base URL incl. stage (default: $ACCESSCTL_API_URL)")
    parent.add_argument("--region", default=unset, help="AWS region to sign for (default: from URL or environment)")
    parent.add_argument("--profile", default=unset, help="AWS profile for credentials")
    parent.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if in_subcommand else False,
        help="machine-readable JSON output",
    )
    return parent


def build_parser() -> _Parser:
    """The argument parser for ``accessctl``."""
    parser = _Parser(
        prog="accessctl", description="Just-in-time IAM access to AWS RDS databases.", parents=[_common_options(False)]
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_common_options(True)]

    def wait_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--timeout", type=_seconds, default=300.0, help="seconds to wait (default 300)")
        sub.add_argument(
            "--print",
            dest="print_as",
            choices=PRINT_CHOICES,
            help="once granted, print a fresh auth token, a connection URL, shell exports or JSON",
        )
        sub.add_argument("--dbname", help="database name to put in the URL / environment")

    request = commands.add_parser("request", parents=common, help="request access to a database")
    request.add_argument("--database", required=True, help="RDS instance or Aurora cluster identifier")
    request.add_argument("--db-user", required=True, help="database user (set up for IAM authentication)")
    request.add_argument("--duration", required=True, type=_duration, help="15m, 2h, 1h30m or minutes")
    request.add_argument("--reason", required=True, help="why access is needed (audited)")
    request.add_argument("--idempotency-key", help="replaying the same key returns the same request")
    request.add_argument("--wait", action="store_true", help="wait for the outcome (implied by --print)")
    wait_options(request)
    request.set_defaults(handler=_cmd_request)

    wait = commands.add_parser("wait", parents=common, help="wait for a request's outcome")
    wait.add_argument("request_id")
    wait_options(wait)
    wait.set_defaults(handler=_cmd_wait)

    status = commands.add_parser("status", parents=common, help="show a request")
    status.add_argument("request_id")
    status.set_defaults(handler=_cmd_status)

    token = commands.add_parser("token", parents=common, help="print credentials for a granted request")
    token.add_argument("request_id")
    token.add_argument("--print", dest="print_as", choices=PRINT_CHOICES, default="token")
    token.add_argument("--dbname", help="database name to put in the URL / environment")
    token.set_defaults(handler=_cmd_token)

    grants = commands.add_parser("grants", parents=common, help="list grants")
    grants.add_argument("--principal", help="only grants to this role ARN (admins: any role)")
    grants.add_argument("--database", help="only grants on this database")
    which = grants.add_mutually_exclusive_group()
    which.add_argument(
        "--active", dest="active", action="store_const", const=True, default=True, help="only active grants (default)"
    )
    which.add_argument("--all", dest="active", action="store_const", const=False, help="active and past grants")
    grants.set_defaults(handler=_cmd_grants)

    revoke = commands.add_parser("revoke", parents=common, help="revoke a grant now")
    revoke.add_argument("grant_id")
    revoke.set_defaults(handler=_cmd_revoke)

    audit = commands.add_parser("audit", parents=common, help="query and verify the audit log (admins)")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="AUDIT_COMMAND")
    query = audit_commands.add_parser("query", parents=common, help="audit records matching filters (all pages)")
    query.add_argument("--database", help="only records about this database")
    query.add_argument("--principal", help="only records about this principal ARN")
    query.add_argument(
        "--requester", help="only records of requests by this requester: a company identity (email) or a role ARN"
    )
    query.add_argument("--subject", help="only records of this request id or resource (e.g. security-group/sg-1)")
    query.add_argument("--type", dest="event_type", help="only this event type, e.g. BREAK_GLASS_USED")
    query.add_argument("--outcome", help="only this outcome, e.g. DENY")
    query.add_argument("--since", help="ISO 8601 instant (default: 30 days before --until)")
    query.add_argument("--until", help="ISO 8601 instant (default: now)")
    query.add_argument("--jsonl", action="store_true", help="one JSON record per line (export)")
    query.set_defaults(handler=_cmd_audit_query)
    access = audit_commands.add_parser("access", parents=common, help="who had access to a database, and when")
    access.add_argument("--database", required=True)
    access.add_argument("--from", dest="since", required=True, help="ISO 8601 instant")
    access.add_argument("--to", dest="until", required=True, help="ISO 8601 instant")
    access.set_defaults(handler=_cmd_audit_access)
    verify = audit_commands.add_parser("verify", parents=common, help="verify the hash chain; report the first break")
    verify.add_argument("--since", help="ISO 8601 instant (default: the day of --until)")
    verify.add_argument("--until", help="ISO 8601 instant (default: now)")
    verify.add_argument(
        "--anchored",
        action="store_true",
        help="also compare each exported day with its manifest in the audit export bucket (AuditExport=true)",
    )
    verify.add_argument(
        "--async",
        dest="asynchronous",
        action="store_true",
        help="run it in the background (for many days: the synchronous check must end within 30 s) and wait",
    )
    verify.set_defaults(handler=_cmd_audit_verify)
    _verify_export_parser(audit_commands, common)
    return parser


def _verify_export_parser(audit_commands: Any, common: list[_Parser]) -> None:
    check = audit_commands.add_parser(
        EXPORT_COMMAND,
        parents=common,
        usage_exit=EXIT_EXPORT_UNCHECKED,
        help="check the audit export in S3 with your own credentials, without the API (exit 0 ok, 1 break, 2 error)",
        description=(
            "Read each day's manifest and stream objects from the export bucket and check them: each object's "
            "sha256, every record's hash and chain link, contiguous sequences (expired records excepted), and "
            "the manifest's head and record count. Needs s3:GetObject, s3:GetObjectRetention and s3:ListBucket "
            "(without it a missing manifest reads as access denied). AWS_ENDPOINT_URL overrides the S3 endpoint."
        ),
    )
    check.add_argument("--bucket", required=True, help="the audit export bucket")
    check.add_argument("--prefix", default=EXPORT_PREFIX, help=f"key prefix of the export (default {EXPORT_PREFIX})")
    check.add_argument("--since", required=True, type=_day, help="first day, YYYY-MM-DD")
    check.add_argument("--until", required=True, type=_day, help="last day, YYYY-MM-DD")
    check.add_argument("--require-all", action="store_true", help="a day without a manifest is a break")
    check.add_argument("--require-lock", action="store_true", help="an object without Object Lock retention is a break")
    check.set_defaults(handler=None, standalone=_cmd_audit_verify_export)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["policy"]:
        return _policy_tools(arguments[1:])
    parser = build_parser()
    if EXPORT_COMMAND in arguments:
        parser.usage_exit = EXIT_EXPORT_UNCHECKED  # e.g. an unknown option after the subcommand's own
    args = parser.parse_args(arguments)
    if getattr(args, "standalone", None) is not None:
        return int(args.standalone(parser, args))
    try:
        session = botocore.session.Session(profile=args.profile) if args.profile else None
        client = AccessctlClient(args.api_url, region=args.region, session=session)
        return int(args.handler(client, args))
    except AccessctlError as exc:
        _err(f"error: {exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _policy_tools(arguments: list[str]) -> int:
    """`accessctl policy validate|test`: the policy engine's own tooling, where it is installed.

    It lives with the controller's package (it evaluates exactly as the deployed function does),
    which a workload's client install does not carry.
    """
    try:
        from accessctl.policy.tool import main as policy_main  # type: ignore[import-not-found]
    except ImportError:
        _err(
            "error: `accessctl policy` needs the controller package: run it from a checkout with "
            "PYTHONPATH=layers/accessctl (or `make policy`)"
        )
        return EXIT_ERROR
    return int(policy_main(arguments))


# ---------------------------------------------------------------------- commands


def _cmd_request(client: AccessctlClient, args: argparse.Namespace) -> int:
    submission = client.submit(args.database, args.db_user, args.duration, args.reason, args.idempotency_key)
    if not (args.wait or args.print_as):
        _out(submission.raw if args.json else f"{submission.request_id} {submission.status}")
        return EXIT_OK
    _progress(f"submitted request {submission.request_id}")
    return _await(client, submission.request_id, args)


def _cmd_wait(client: AccessctlClient, args: argparse.Namespace) -> int:
    return _await(client, args.request_id, args)


def _cmd_status(client: AccessctlClient, args: argparse.Namespace) -> int:
    view = client.get_request(args.request_id)
    _out(view.raw if args.json else _describe(view))
    return EXIT_OK


def _cmd_token(client: AccessctlClient, args: argparse.Namespace) -> int:
    return _finish(client, client.get_request(args.request_id), args)


def _cmd_grants(client: AccessctlClient, args: argparse.Namespace) -> int:
    grants = client.list_grants(principal=args.principal, database=args.database, active=args.active)
    if args.json:
        _out({"grants": [grant.raw for grant in grants], "next_token": None})
    elif not grants:
        _out("no grants")
    else:
        _out(_table(grants))
    return EXIT_OK


def _cmd_audit_query(client: AccessctlClient, args: argparse.Namespace) -> int:
    events = client.audit_events(
        since=args.since,
        until=args.until,
        subject=args.subject,
        principal=args.principal,
        requester=args.requester,
        database=args.database,
        type=args.event_type,
        outcome=args.outcome,
        limit=1000,
    )
    if args.jsonl:
        for event in events:
            print(json.dumps(event, sort_keys=True, separators=(",", ":")), flush=True)
        return EXIT_OK
    listed = list(events)
    if args.json:
        _out({"events": listed})
    elif not listed:
        _out("no audit records")
    else:
        for event in listed:
            what = " ".join(str(event.get(name) or "-") for name in ("outcome", "principal_arn", "database"))
            _out(f"{event['at']}  {event['event_type']:<20} {event['subject']}  {what}  {event.get('reason') or ''}")
    return EXIT_OK


def _cmd_audit_access(client: AccessctlClient, args: argparse.Namespace) -> int:
    answer = client.audit_access(args.database, args.since, args.until)
    if args.json:
        _out(answer)
    elif not answer.get("grants"):
        _out(f"nobody had access to {args.database} between {answer.get('since')} and {answer.get('until')}")
    else:
        for grant in answer["grants"]:
            flag = " BREAK-GLASS" if grant.get("break_glass") else ""
            approvers = grant.get("approved_by") or []
            approved = ", ".join(approvers) if isinstance(approvers, list) else str(approvers)
            _out(
                f"{grant['grant_id']}  {grant.get('principal_arn') or '-'}  {grant.get('db_user') or '-'}  "
                f"{grant['issued_at']} -> {grant.get('ends_at') or 'open'}  approved by: "
                f"{approved or '-'}{flag}"
            )
    return EXIT_OK


def _cmd_audit_verify(client: AccessctlClient, args: argparse.Namespace) -> int:
    if args.asynchronous:
        started = client.start_audit_verification(args.since, args.until, anchored=args.anchored)
        _progress(f"verification {started['verification_id']} started")
        done = client.wait_audit_verification(started["verification_id"])
        if done.get("status") != "DONE":
            _out(done if args.json else f"verification {done.get('verification_id')} {done.get('status')}")
            return EXIT_ERROR
        report = dict(done.get("report") or {})
    else:
        report = client.audit_verify(args.since, args.until, anchored=args.anchored)
    if args.json:
        _out(report)
    elif report.get("ok"):
        summary = f"ok: {report.get('records')} records in {report.get('streams')} streams verify"
        if report.get("expired"):
            summary += f"; {report['expired']} left by retention"
        if args.anchored:
            summary += f"; {len(report.get('anchored_days') or [])} days match their export manifest"
        _out(summary)
    else:
        found = report.get("first_break") or {}
        _out(f"BROKEN at {found.get('stream')} #{found.get('sequence')} ({found.get('kind')}): {found.get('detail')}")
    return EXIT_OK if report.get("ok") else EXIT_ERROR


def _cmd_audit_verify_export(parser: _Parser, args: argparse.Namespace) -> int:
    if args.since > args.until:
        parser.error("--since is after --until")
    if (args.until - args.since).days >= MAX_EXPORT_DAYS:
        parser.error(f"at most {MAX_EXPORT_DAYS} days at a time")
    prefix = args.prefix if not args.prefix or args.prefix.endswith("/") else f"{args.prefix}/"
    try:
        report = verify_export(
            _s3_client(args),
            args.bucket,
            args.since,
            args.until,
            prefix=prefix,
            require_all=args.require_all,
            require_lock=args.require_lock,
        )
    except ExportAccessError as exc:
        _err(f"error: {exc}")
        return EXIT_EXPORT_UNCHECKED
    except KeyboardInterrupt:
        return 130
    _out(report.to_dict() if args.json else _describe_export(report))
    return EXIT_OK if report.ok else EXIT_EXPORT_BROKEN


def _s3_client(args: argparse.Namespace) -> Any:
    """S3 with the caller's credential chain (or --profile); AWS_ENDPOINT_URL(_S3) is honoured by botocore."""
    try:
        session = botocore.session.Session(profile=args.profile) if args.profile else botocore.session.Session()
        region = args.region or os.environ.get("AWS_REGION") or session.get_config_variable("region") or "us-east-1"
        config = Config(retries={"mode": "standard", "max_attempts": 5})
        return session.create_client("s3", region_name=region, config=config)
    except BotoCoreError as exc:
        raise ExportAccessError(f"cannot create an S3 client: {exc}") from exc


def _describe_export(report: ExportReport) -> str:
    lines: list[str] = []
    for day in report.days:
        records = sum(stream.records for stream in day.streams)
        expired = sum(stream.expired for stream in day.streams)
        if day.status == "not_exported":
            lines.append(f"{day.day}  not exported (no {day.manifest_key})")
            continue
        streams = sum(1 for stream in day.streams if stream.records or stream.expired or stream.found)
        summary = f"{day.day}  {day.status}: {records} records in {streams} streams"
        lines.append(summary + (f", {expired} expired before the export" if expired else ""))
        for found in day.breaks:
            where = f"{found.stream or day.day} #{found.sequence if found.sequence is not None else '-'}"
            at_line = f" [{found.key} line {found.line}]" if found.line else (f" [{found.key}]" if found.key else "")
            lines.append(f"  BROKEN at {where} ({found.kind}): {found.detail}{at_line}")
    lines += [f"warning: {warning}" for warning in report.warnings]
    exported = [day for day in report.days if day.status != "not_exported"]
    missing = len(report.days) - len(exported)
    tail = f"; {_count(missing, 'day')} not exported" if missing else ""
    if report.ok:
        where = f"s3://{report.bucket}/{report.prefix}"
        lines.append(f"ok: every exported day verifies ({_count(len(exported), 'day')} in {where}){tail}")
    else:
        broken = sum(1 for day in report.days if day.status == "broken")
        lines.append(
            f"BROKEN: {_count(len(report.breaks), 'break')} in {_count(broken, 'day')} "
            f"of s3://{report.bucket}/{report.prefix}"
        )
    return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _cmd_revoke(client: AccessctlClient, args: argparse.Namespace) -> int:
    grant = client.revoke(args.grant_id)
    _out(
        grant.raw
        if args.json
        else f"grant {grant.grant_id} {grant.status} at {grant.revoked_at or '-'}"
        f" ({grant.revoke_reason or 'no reason given'})"
    )
    return EXIT_OK


# ---------------------------------------------------------------------- outcomes


def _await(client: AccessctlClient, request_id: str, args: argparse.Namespace) -> int:
    try:
        view = client.wait(request_id, timeout=args.timeout, on_progress=_progress_reporter(request_id))
    except WaitTimeoutError as exc:
        _err(f"error: {exc.message}; resume with: accessctl wait {request_id}")
        if args.json and exc.last is not None:
            _out(exc.last.raw)
        return EXIT_TIMEOUT
    return _finish(client, view, args)


def _finish(client: AccessctlClient, view: RequestView, args: argparse.Namespace) -> int:
    """Print a request's outcome and map it to an exit code."""
    if view.status in GRANTED_STATUSES:
        if args.print_as:
            _out(_credentials(client, view, args.print_as, args.dbname))
        else:
            _out(view.raw if args.json else _describe(view))
        return EXIT_OK
    if args.json:
        _out(view.raw)
    if view.status == DENIED:
        reason = view.decision.reason if view.decision else None
        rule = f" (rule {view.decision.rule_id})" if view.decision and view.decision.rule_id else ""
        _err(f"request {view.request_id} DENIED: {reason or 'no reason given'}{rule}")
        return EXIT_DENIED
    if view.status in (FAILED, REVOKED):
        detail = view.failure or (view.grant.revoke_reason if view.grant else None) or "no detail given"
        _err(f"request {view.request_id} {view.status}: {detail}")
        return EXIT_FAILED
    _err(f"request {view.request_id} is {view.status}, not granted yet: use `accessctl wait {view.request_id}`")
    return EXIT_ERROR


def _credentials(client: AccessctlClient, view: RequestView, print_as: str, dbname: str | None) -> str:
    token = client.auth_token(view)
    if print_as == "token":
        return token
    if print_as == "url":
        return client.connection_url(view, token, dbname)
    if print_as == "env":
        # `export` so that `eval "$(accessctl ...)"` reaches child processes (psql, the app) too.
        env = client.connection_env(view, token, dbname)
        return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in env.items())
    conn = view.connection
    assert conn is not None  # auth_token above has checked
    return json.dumps(
        {
            "request_id": view.request_id,
            "grant_id": view.grant.grant_id if view.grant else None,
            "expires_at": view.grant.expires_at if view.grant else None,
            "host": conn.host,
            "port": conn.port,
            "region": conn.region,
            "engine": conn.engine,
            "db_user": conn.db_user,
            "dbname": dbname,
            "token": token,
            "url": client.connection_url(view, token, dbname),
        },
        indent=2,
    )


# ---------------------------------------------------------------------- output


def _out(value: Any) -> None:
    print(value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True), flush=True)


def _err(message: str) -> None:
    print(f"accessctl: {message}", file=sys.stderr, flush=True)


def _progress(message: str) -> None:
    # Progress is for people watching; logs of containers and CI stay clean.
    if sys.stderr.isatty():
        _err(message)


def _progress_reporter(request_id: str) -> Callable[[RequestView], None]:
    started = time.monotonic()
    seen: list[str] = []

    def report(view: RequestView) -> None:
        if not seen or seen[-1] != view.status:
            seen.append(view.status)
            _progress(f"request {request_id}: {view.status} ({time.monotonic() - started:.1f}s)")

    return report


def _describe(view: RequestView) -> str:
    def show(value: object) -> str:
        return "-" if value is None else str(value)

    lines = [
        f"request   {view.request_id}  {view.status}",
        f"database  {show(view.database)} as {show(view.db_user)}, {show(view.requested_minutes)} min requested",
        f"principal {show(view.role_arn or view.principal_arn)}",
        f"reason    {show(view.reason)}",
    ]
    if view.decision:
        decision = view.decision
        granted = f", {decision.granted_minutes} min" if decision.granted_minutes else ""
        rule = f" [rule {decision.rule_id}]" if decision.rule_id else ""
        lines.append(f"decision  {decision.outcome}{granted}: {decision.reason or '-'}{rule}")
    if view.grant:
        grant = view.grant
        revoked = f", revoked {grant.revoked_at} ({grant.revoke_reason})" if grant.revoked_at else ""
        lines.append(f"grant     {grant.grant_id}, expires {grant.expires_at}{revoked}")
    if view.connection:
        conn = view.connection
        lines.append(f"endpoint  {conn.host}:{conn.port} ({conn.engine}, {conn.region})")
    if view.failure:
        lines.append(f"failure   {view.failure}")
    return "\n".join(lines)


def _table(grants: Sequence[GrantRecord]) -> str:
    header = ("GRANT_ID", "STATUS", "DATABASE", "DB_USER", "EXPIRES_AT", "PRINCIPAL")
    rows = [header] + [
        tuple(
            str(value or "-") for value in (g.grant_id, g.status, g.database, g.db_user, g.expires_at, g.principal_arn)
        )
        for g in grants
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1] for row in rows
    )
