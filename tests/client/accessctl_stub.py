"""Helpers for the client tests: a local stand-in for the accessctl API and SigV4 verification.

The stand-in listens on 127.0.0.1 only, records every request, and answers from per-route scripts.
(A module of its own, not conftest, so test modules can import it unambiguously.)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, REGION = "testing", "testing", "testing-session-token", "eu-west-1"
DB_HOST = "orders-demo.cluster-abc123.eu-west-1.rds.amazonaws.com"


class FakeClock:
    """Replaces the client's sleep and monotonic clock: waiting is instant and every delay is recorded."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


@dataclass
class Recorded:
    """One request as the stand-in API received it."""

    method: str
    target: str  # path and query exactly as sent
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.target).query, keep_blank_values=True))

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Answer = tuple[int, Any]


@dataclass
class StubApi:
    """Scripted answers per (method, path); the last answer of a script repeats."""

    base_url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    scripts: dict[tuple[str, str], list[Answer]] = field(default_factory=dict)

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.scripts[(method, path)] = list(answers)

    def answer(self, recorded: Recorded) -> Answer:
        script = self.scripts.get((recorded.method, recorded.path))
        if not script:
            return 404, {"message": f"no route for {recorded.method} {recorded.path}"}
        return script.pop(0) if len(script) > 1 else script[0]


def handler_for(stub: StubApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            recorded = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            stub.requests.append(recorded)
            status, payload = stub.answer(recorded)
            raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
            if 300 <= status < 400:
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})"
)


def expected_signature(recorded: Recorded, region: str = REGION, secret_key: str = SECRET_KEY) -> str:
    """Recompute the SigV4 signature the way API Gateway does: from what was received, the signed headers
    named in the request, and a canonical query rebuilt from the decoded parameters."""
    match = _AUTHORIZATION.fullmatch(recorded.headers["authorization"])
    assert match, recorded.headers["authorization"]
    parts = urlsplit(recorded.target)
    pairs = sorted(
        (quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    query = "&".join(f"{k}={v}" for k, v in pairs)
    url = f"http://{recorded.headers['host']}{parts.path}" + (f"?{query}" if query else "")
    headers = {name: recorded.headers[name] for name in match["signed"].split(";")}
    request = AWSRequest(method=recorded.method, url=url, data=recorded.body or None, headers=headers)
    request.context["timestamp"] = recorded.headers["x-amz-date"]
    signer = SigV4Auth(Credentials(match["key"], secret_key, SESSION_TOKEN), "execute-api", region)
    return signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)


def assert_signed(recorded: Recorded, region: str = REGION) -> None:
    """Assert the request carries a valid SigV4 signature for execute-api from the test credentials."""
    match = _AUTHORIZATION.fullmatch(recorded.headers.get("authorization", ""))
    assert match, f"no SigV4 Authorization header: {recorded.headers.get('authorization')!r}"
    assert (match["key"], match["region"], match["service"]) == (ACCESS_KEY, region, "execute-api")
    assert match["date"] == recorded.headers["x-amz-date"][:8]
    assert {"host", "x-amz-date", "x-amz-security-token"} <= set(match["signed"].split(";"))
    assert recorded.headers["x-amz-security-token"] == SESSION_TOKEN
    assert match["signature"] == expected_signature(recorded, region)


def request_view(status: str, request_id: str = "req-1", **overrides: Any) -> dict[str, Any]:
    """A ``GET /requests/{id}`` answer in the given status (connection details only when ACTIVE)."""
    view: dict[str, Any] = {
        "request_id": request_id,
        "status": status,
        "principal_arn": "arn:aws:sts::123456789012:assumed-role/orders-service/task-1",
        "role_arn": "arn:aws:iam::123456789012:role/orders-service",
        "database": "orders-demo",
        "db_user": "app_rw",
        "requested_minutes": 15,
        "reason": "startup of orders-service",
        "requested_at": "2026-12-03T16:30:00Z",
        "decision": None,
        "grant": None,
        "connection": None,
        "failure": None,
    }
    if status in ("DENIED", "GRANTING", "ACTIVE", "REVOKED"):
        allow = status != "DENIED"
        view["decision"] = {
            "outcome": "ALLOW" if allow else "DENY",
            "reason": "allowed by rule" if allow else "no rule allows app_rw on orders-demo",
            "rule_id": "orders-rw" if allow else None,
            "granted_minutes": 15 if allow else None,
            "target": None,
            "decided_at": "2026-12-03T16:30:01Z",
        }
    if status in ("ACTIVE", "REVOKED"):
        view["grant"] = {
            "grant_id": "grant-1",
            "policy_name": "accessctl-grant-1",
            "policy_arn": "arn:aws:iam::123456789012:policy/accessctl/grants/accessctl-grant-1",
            "role_name": "orders-service",
            "resource_arn": "arn:aws:rds-db:eu-west-1:123456789012:dbuser:cluster-ABC/app_rw",
            "issued_at": "2026-12-03T16:30:02Z",
            "expires_at": "2026-12-03T16:45:02Z",
            "revoked_at": "2026-12-03T16:31:00Z" if status == "REVOKED" else None,
            "revoke_reason": "EARLY" if status == "REVOKED" else None,
        }
    if status == "ACTIVE":
        view["connection"] = {
            "host": DB_HOST,
            "port": 5432,
            "region": REGION,
            "engine": "aurora-postgresql",
            "db_user": "app_rw",
        }
    if status == "FAILED":
        view["failure"] = "could not attach the grant policy"
    view.update(overrides)
    return view


def grant_record(grant_id: str, status: str = "ACTIVE") -> dict[str, Any]:
    """One grant as ``GET /grants`` lists it."""
    return {
        "grant_id": grant_id,
        "status": status,
        "principal_arn": "arn:aws:sts::123456789012:assumed-role/orders-service/task-1",
        "role_name": "orders-service",
        "database": "orders-demo",
        "db_user": "app_rw",
        "expires_at": "2026-12-03T16:45:02Z",
        "policy_arn": f"arn:aws:iam::123456789012:policy/accessctl/grants/accessctl-{grant_id}",
        "revoked_at": "2026-12-03T16:31:00Z" if status == "REVOKED" else None,
        "revoke_reason": "EARLY" if status == "REVOKED" else None,
    }
