"""``python -m accessctl_local demo``: one just-in-time grant, end to end, printed as a timeline.

The real template.yaml is deployed into the embedded emulator; a workload role signs a request
with SigV4 over HTTP; the real workflow decides, grants, waits until expiry and revokes.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from .estate import attached_policies, audit_trail, create_database, policy_document, workload
from .stack import LocalStack

DEMO_DATABASE = "orders-demo"
DEMO_ROLE = "orders-service"
DEMO_DB_USER = "app_rw"


class Timeline:
    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._started = time.monotonic()

    def say(self, text: str, detail: str | None = None) -> None:
        elapsed = time.monotonic() - self._started
        self._out.write(f"[{datetime.now(UTC):%H:%M:%S} +{elapsed:6.1f}s] {text}\n")
        if detail:
            self._out.write(textwrap.indent(detail.rstrip("\n"), " " * 23) + "\n")
        self._out.flush()


def run_demo(project_root: Path, *, minutes: int, api_port: int, keep_running: bool, verbose: bool, out: TextIO) -> int:
    timeline = Timeline(out)
    timeline.say("starting the embedded AWS emulator (moto) and deploying template.yaml into it")
    # The functions' structured logs and EMF metrics go to the same terminal: keep them quiet unless asked.
    overrides = {} if verbose else {"LogLevel": "WARNING"}
    if not verbose:
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
        warnings.filterwarnings("ignore", message="No application metrics to publish")
    with LocalStack.start(project_root=project_root, api_port=api_port, parameter_overrides=overrides) as stack:
        timeline.say(f"stack ready: API {stack.api_url}   emulator {stack.endpoint_url}")
        status = _scenario(stack, timeline, minutes)
        if keep_running:
            timeline.say("scenario done; the stack keeps running. Ctrl-C to stop.", stack.describe())
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        return status


def _scenario(stack: LocalStack, timeline: Timeline, minutes: int) -> int:
    database = create_database(stack, DEMO_DATABASE)
    endpoint = database["Endpoint"]
    timeline.say(
        f"estate: RDS PostgreSQL {DEMO_DATABASE} with IAM authentication on",
        f"endpoint {endpoint['Address']}:{endpoint['Port']}   DbiResourceId {database['DbiResourceId']}",
    )
    orders = workload(stack, DEMO_ROLE, session_name="orders-task-1")
    timeline.say(
        f"workload assumed role {orders.role_arn} (tagged accessctl-grantable=true)",
        f"signing as {orders.principal_arn}",
    )

    submission = orders.client.submit(
        database=DEMO_DATABASE,
        db_user=DEMO_DB_USER,
        duration_minutes=minutes,
        reason="orders-service startup (demo)",
        idempotency_key="orders-task-1-boot",
    )
    timeline.say(
        f"POST /requests (SigV4) database={DEMO_DATABASE} db_user={DEMO_DB_USER} duration={minutes}m",
        f"202 request_id={submission.request_id}  (the workflow's execution name)",
    )

    view = orders.client.wait(submission.request_id, timeout=60)
    decision = view.decision
    timeline.say(f"decided: {decision.outcome if decision else '?'} - {decision.reason if decision else ''}")
    if view.status != "ACTIVE" or view.grant is None:
        timeline.say(f"request ended {view.status}: {view.raw.get('failure')}")
        return 1

    grant = view.grant
    document = policy_document(stack, grant.policy_arn)
    timeline.say(
        f"grant ACTIVE until {grant.expires_at}: {grant.policy_arn}",
        json.dumps(document, indent=2) + f"\nattached to role {DEMO_ROLE}: {attached_policies(stack, DEMO_ROLE)}",
    )

    token = orders.client.auth_token(view)
    url = orders.client.connection_url(view, token=token, dbname="orders")
    timeline.say(
        "RDS IAM auth token generated with the workload's credentials (valid 15 minutes, new connections only)",
        f"{token[:72]}...\n{url[:96]}...",
    )

    expires_at = datetime.strptime(grant.expires_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    timeline.say(f"waiting for expiry at {grant.expires_at} (the workflow is in WaitUntilExpiry)")
    time.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()))
    revoked = _wait_while_active(orders.client, submission.request_id, timeout=120)
    if revoked.status != "REVOKED":
        timeline.say(f"request is {revoked.status} after expiry - the sweeper will revoke it")
        return 1
    gone = not any(policy.endswith(grant.policy_name) for policy in attached_policies(stack, DEMO_ROLE))
    lag = (datetime.now(UTC) - expires_at).total_seconds()
    timeline.say(
        f"revoked at expiry: policy deleted from IAM, role {DEMO_ROLE} has no grant attached: {gone}",
        f"revoke reason {revoked.grant.revoke_reason if revoked.grant else '?'}; observed {lag:.1f}s after expiry",
    )

    rows = audit_trail(stack, submission.request_id)
    timeline.say("audit trail", "\n".join(_audit_line(row) for row in rows))
    return 0


def _wait_while_active(client: Any, request_id: str, timeout: float) -> Any:
    """The client's wait() stops at ACTIVE (granted); here we wait for the revocation after it."""
    deadline = time.monotonic() + timeout
    view = client.get_request(request_id)
    while view.status == "ACTIVE" and time.monotonic() < deadline:
        time.sleep(0.5)
        view = client.get_request(request_id)
    return view


def _audit_line(row: dict[str, Any]) -> str:
    return f"{row['at']}  {row['event_type']:<18} {row.get('outcome', ''):<8} actor={row['actor']}  {row.get('reason', '')}"


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="accessctl_local demo", description=__doc__)
    parser.add_argument("--project-root", type=Path, default=Path.cwd())
    parser.add_argument("--minutes", type=int, default=2, help="grant duration (default 2)")
    parser.add_argument("--api-port", type=int, default=3000)
    parser.add_argument("--keep-running", action="store_true", help="keep the stack up after the scenario")
    parser.add_argument("--verbose", action="store_true", help="show the functions' INFO logs too")
    args = parser.parse_args(argv)
    return run_demo(
        args.project_root,
        minutes=args.minutes,
        api_port=args.api_port,
        keep_running=args.keep_running,
        verbose=args.verbose,
        out=sys.stdout,
    )
