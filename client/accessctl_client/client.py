"""``AccessctlClient``: SigV4-signed calls to the accessctl API, waiting, and RDS IAM auth tokens."""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError

from . import connect
from .errors import AccessctlError, ApiError, ConfigurationError, TransportError, WaitTimeoutError, api_error
from .models import Connection, GrantRecord, RequestView, Submission

try:
    __version__ = metadata.version("accessctl-client")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

API_URL_ENV = "ACCESSCTL_API_URL"
SERVICE = "execute-api"
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
_MAX_ERROR_TEXT = 300

# Module-level so tests (and embedders) can substitute a fake clock without real waiting.
_sleep: Callable[[float], None] = time.sleep
_clock: Callable[[], float] = time.monotonic


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would replay our signed headers to another URL (and never verify there): treat it as an error.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def is_transient(exc: BaseException) -> bool:
    """Whether a failed call may succeed if simply tried again later."""
    if isinstance(exc, ApiError):
        return exc.transient
    return isinstance(exc, TransportError) and exc.retryable


class AccessctlClient:
    """Client for the accessctl API.

    ``api_url`` is the API's base URL including any stage path (``https://abc.execute-api.eu-west-1.amazonaws.com/v1``);
    it defaults to ``$ACCESSCTL_API_URL``. Calls are signed with SigV4 for ``execute-api`` using ``session``'s
    credential chain (a new ``botocore.session.Session()`` when omitted). The signing region is ``region`` when
    given, else the region in an ``execute-api`` host name (a signature must carry the API's own region), else
    ``$AWS_REGION``, else the session's (``$AWS_DEFAULT_REGION`` or the profile's).
    """

    backoff_start = 0.5
    backoff_cap = 5.0
    #: Attempts for idempotent calls when the failure is transient (connection trouble, 429, 5xx).
    attempts = 3

    def __init__(
        self,
        api_url: str | None = None,
        region: str | None = None,
        session: botocore.session.Session | None = None,
        *,
        http_timeout: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        url = (api_url or os.environ.get(API_URL_ENV) or "").strip()
        if not url:
            raise ConfigurationError(f"no API URL: pass --api-url or set {API_URL_ENV}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ConfigurationError(f"invalid API URL {url!r}: expected http(s)://host[:port][/stage]")
        self.api_url = url.rstrip("/")
        self._host = parts.netloc
        self._session = session or botocore.session.Session()
        signing_region = region or self._region_from_host(parts.hostname or "") or self._region_from_environment()
        if not signing_region:
            raise ConfigurationError("no AWS region: pass --region or set AWS_REGION / AWS_DEFAULT_REGION")
        self.region: str = signing_region
        self.http_timeout = http_timeout
        self._rng = rng or random.Random()
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._credentials: Any = None
        self._rds_clients: dict[str, Any] = {}

    # ------------------------------------------------------------------ API calls

    def submit(
        self,
        database: str,
        db_user: str,
        duration_minutes: int,
        reason: str,
        idempotency_key: str | None = None,
        on_behalf_of: str | None = None,
    ) -> Submission:
        """Submit an access request (``POST /requests``). The decision is made asynchronously: see ``wait``.

        With an ``idempotency_key`` a replay returns the same request, so transient failures are retried.
        ``on_behalf_of`` (an email) is for allow-listed chat-ops bots asking for a named person.
        """
        body: dict[str, Any] = {
            "database": database,
            "db_user": db_user,
            "duration_minutes": duration_minutes,
            "reason": reason,
        }
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        if on_behalf_of is not None:
            body["on_behalf_of"] = on_behalf_of
        answer = self._call("POST", "/requests", body=body, retry=idempotency_key is not None)
        return Submission.from_dict(answer)

    def get_request(self, request_id: str) -> RequestView:
        """Read a request's current status, decision, grant and (while ACTIVE) connection details."""
        return RequestView.from_dict(self._call("GET", f"/requests/{_segment(request_id)}", retry=True))

    def wait(
        self,
        request_id: str,
        timeout: float = 300.0,
        on_progress: Callable[[RequestView], None] | None = None,
    ) -> RequestView:
        """Poll a request until it is ACTIVE, DENIED, FAILED or REVOKED and return that view.

        Polls back off exponentially with jitter (from ``backoff_start`` up to ``backoff_cap`` seconds).
        Transient failures (connection trouble, 429, 5xx) are ridden out until the deadline; other errors
        raise at once. ``on_progress`` is called with every view polled. Raises ``WaitTimeoutError`` (with
        the last view in ``.last``) when ``timeout`` seconds pass first.
        """
        path = f"/requests/{_segment(request_id)}"
        deadline = _clock() + timeout
        last: RequestView | None = None
        last_error: AccessctlError | None = None
        attempt = 0
        while True:
            try:
                last = RequestView.from_dict(self._call("GET", path))
                last_error = None
            except AccessctlError as exc:
                if not is_transient(exc):
                    raise
                last_error = exc
            else:
                if on_progress is not None:
                    on_progress(last)
                if last.is_terminal:
                    return last
            remaining = deadline - _clock()
            if remaining <= 0:
                state = f"still {last.status}" if last else "status unknown"
                cause = f"; last error: {last_error}" if last_error else ""
                message = f"timed out after {timeout:g}s waiting for request {request_id} ({state}{cause})"
                raise WaitTimeoutError(message, last=last)
            _sleep(min(self.backoff_delay(attempt), remaining))
            attempt += 1

    def list_grants_page(
        self,
        principal: str | None = None,
        database: str | None = None,
        active: bool = True,
        next_token: str | None = None,
    ) -> tuple[list[GrantRecord], str | None]:
        """One page of ``GET /grants``: the grants and the token for the next page (``None`` at the end).

        ``principal`` is a role ARN (only admins may name another role than their own); ``active=False``
        includes expired and revoked grants.
        """
        query: dict[str, str] = {}
        if principal:
            query["principal"] = principal
        if database:
            query["database"] = database
        # Always explicit: the API's default for an absent "active" is true.
        query["active"] = "true" if active else "false"
        if next_token:
            query["next_token"] = next_token
        answer = self._call("GET", "/grants", query=query, retry=True)
        grants = [GrantRecord.from_dict(item) for item in answer.get("grants") or []]
        return grants, answer.get("next_token") or None

    def list_grants(
        self, principal: str | None = None, database: str | None = None, active: bool = True
    ) -> list[GrantRecord]:
        """Every grant matching the filters, following ``next_token`` across pages."""
        grants: list[GrantRecord] = []
        seen: set[str] = set()
        token: str | None = None
        while True:
            page, token = self.list_grants_page(principal, database, active, token)
            grants.extend(page)
            if token is None:
                return grants
            if token in seen:  # a server bug must not turn into an endless loop
                raise TransportError(f"the API repeated pagination token {token!r}")
            seen.add(token)

    # ------------------------------------------------------------------ audit (admins only)

    def audit_page(self, next_token: str | None = None, **filters: str | int | None) -> dict[str, Any]:
        """One page of ``GET /audit``: ``{"events": [...], "next_token": ...}``.

        Filters: ``since``, ``until`` (ISO 8601), ``subject``, ``principal``, ``requester``, ``database``,
        ``type``, ``outcome``, ``limit``.
        """
        query = {name: str(value) for name, value in filters.items() if value is not None}
        if next_token:
            query["next_token"] = next_token
        return dict(self._call("GET", "/audit", query=query, retry=True))

    def audit_events(self, **filters: str | int | None) -> Iterator[dict[str, Any]]:
        """Every audit record matching the filters, oldest first, following ``next_token``."""
        seen: set[str] = set()
        token: str | None = None
        while True:
            page = self.audit_page(token, **filters)
            yield from page.get("events") or []
            token = page.get("next_token") or None
            if token is None:
                return
            if token in seen:
                raise TransportError(f"the API repeated pagination token {token!r}")
            seen.add(token)

    def audit_access(self, database: str, since: str, until: str) -> dict[str, Any]:
        """Who had access to ``database`` between ``since`` and ``until`` (``GET /audit/access``)."""
        query = {"database": database, "from": since, "to": until}
        return dict(self._call("GET", "/audit/access", query=query, retry=True))

    def audit_verify(
        self, since: str | None = None, until: str | None = None, *, anchored: bool = False
    ) -> dict[str, Any]:
        """Verify the audit hash chain over the days of [since, until] (``GET /audit/verify``).

        ``anchored``: also compare each exported day with its manifest in the export bucket, which
        finds a day's stream deleted together with its chain links."""
        query = {name: value for name, value in (("since", since), ("until", until)) if value}
        if anchored:
            query["anchored"] = "true"
        return dict(self._call("GET", "/audit/verify", query=query, retry=True))

    def start_audit_verification(
        self, since: str | None = None, until: str | None = None, *, anchored: bool = False
    ) -> dict[str, Any]:
        """Start verifying a long range asynchronously (``POST /audit/verifications``); returns its id."""
        body = {name: value for name, value in (("since", since), ("until", until)) if value}
        return dict(self._call("POST", "/audit/verifications", body={**body, "anchored": anchored}))

    def wait_audit_verification(self, verification_id: str, timeout: float = 900.0) -> dict[str, Any]:
        """Poll ``GET /audit/verifications/{id}`` until DONE or FAILED (``WaitTimeoutError`` after ``timeout``)."""
        path = f"/audit/verifications/{_segment(verification_id)}"
        deadline = _clock() + timeout
        attempt = 0
        while True:
            last = dict(self._call("GET", path, retry=True))
            if last.get("status") != "RUNNING":
                return last
            remaining = deadline - _clock()
            if remaining <= 0:
                raise WaitTimeoutError(f"timed out after {timeout:g}s waiting for verification {verification_id}")
            _sleep(min(self.backoff_delay(attempt), remaining))
            attempt += 1

    def revoke(self, grant_id: str) -> GrantRecord:
        """Revoke a grant now (``DELETE /grants/{grant_id}``) and return it as revoked."""
        return GrantRecord.from_dict(self._call("DELETE", f"/grants/{_segment(grant_id)}", retry=True))

    # ------------------------------------------------------------------ database credentials

    def auth_token(self, request: RequestView | Connection) -> str:
        """An RDS IAM authentication token (valid 15 minutes) for a granted request's connection.

        Generated locally (a presigned URL, no network call) with this client's credentials, which must be
        those of the role the grant was made to.
        """
        conn = _connection_of(request)
        try:
            rds: Any = self._rds_clients.get(conn.region)
            if rds is None:
                rds = self._rds_clients[conn.region] = self._session.create_client("rds", region_name=conn.region)
            return str(
                rds.generate_db_auth_token(
                    DBHostname=conn.host, Port=int(conn.port), DBUsername=conn.db_user, Region=conn.region
                )
            )
        except BotoCoreError as exc:
            raise ConfigurationError(f"cannot generate an RDS auth token: {exc}") from exc

    def connection_url(
        self, request: RequestView | Connection, token: str | None = None, dbname: str | None = None
    ) -> str:
        """A TLS-only connection URL (``postgresql://`` or ``mysql://``) with an auth token as the password."""
        conn = _connection_of(request)
        return connect.connection_url(conn, token or self.auth_token(conn), dbname)

    def connection_env(
        self, request: RequestView | Connection, token: str | None = None, dbname: str | None = None
    ) -> dict[str, str]:
        """Environment variables for the engine's standard clients (``PGHOST``... or ``MYSQL_HOST``...)."""
        conn = _connection_of(request)
        return connect.connection_env(conn, token or self.auth_token(conn), dbname)

    # ------------------------------------------------------------------ internals

    def backoff_delay(self, attempt: int) -> float:
        """Seconds to wait before poll ``attempt + 1``: exponential, capped, with "equal jitter"
        (half fixed, half random) so many containers starting together do not poll in lockstep."""
        nominal = min(self.backoff_cap, self.backoff_start * 2.0 ** min(attempt, 32))
        return nominal / 2 + self._rng.uniform(0, nominal / 2)

    def _region_from_host(self, hostname: str) -> str | None:
        match = _EXECUTE_API_HOST.match(hostname.lower())
        return match["region"] if match else None

    def _region_from_environment(self) -> str | None:
        try:
            return os.environ.get("AWS_REGION") or self._session.get_config_variable("region")
        except BotoCoreError as exc:  # e.g. a --profile that does not exist
            raise ConfigurationError(f"cannot read AWS configuration: {exc}") from exc

    def _frozen_credentials(self) -> Any:
        try:
            if self._credentials is None:
                self._credentials = self._session.get_credentials()
            if self._credentials is None:
                raise ConfigurationError("no AWS credentials found (environment, profile, SSO or instance role)")
            # Refreshable credentials (assumed roles, container/instance roles) refresh themselves here.
            return self._credentials.get_frozen_credentials()
        except BotoCoreError as exc:
            raise ConfigurationError(f"cannot load AWS credentials: {exc}") from exc

    def _call(
        self, method: str, path: str, *, query: dict[str, str] | None = None, body: Any = None, retry: bool = False
    ) -> Any:
        attempts = self.attempts if retry else 1
        for attempt in range(attempts):
            try:
                return self._send(method, path, query, body)
            except AccessctlError as exc:
                if attempt + 1 >= attempts or not is_transient(exc):
                    raise
                _sleep(self.backoff_delay(attempt))
        raise AssertionError("unreachable")

    def _send(self, method: str, path: str, query: dict[str, str] | None, body: Any) -> Any:
        # Encode the query exactly as SigV4 canonicalises it (RFC 3986, "%20" not "+"): botocore signs
        # the query string as written, and API Gateway recomputes it from the decoded parameters.
        url = self.api_url + path + (f"?{urlencode(sorted(query.items()), quote_via=quote)}" if query else "")
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        headers = {"Host": self._host, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        signed = AWSRequest(method=method, url=url, data=data, headers=headers)
        SigV4Auth(self._frozen_credentials(), SERVICE, self.region).add_auth(signed)
        request = urllib.request.Request(url, data=data, method=method, headers=dict(signed.headers.items()))
        # Not signed (botocore never signs User-Agent), so it may be added afterwards.
        request.add_header("User-Agent", f"accessctl-client/{__version__}")
        what = f"{method} {self.api_url}{path}"
        try:
            with self._opener.open(request, timeout=self.http_timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read() or b""
            decoded = _json_or_none(raw)
            fallback = f"{what} failed: {exc.code} {exc.reason}"
            if decoded is None and (text := raw.decode("utf-8", "replace").strip()):
                fallback += f": {text[:_MAX_ERROR_TEXT]}"
            raise api_error(exc.code, decoded, fallback) from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            message = f"cannot reach the accessctl API ({what}): {reason or type(exc).__name__}"
            # A certificate that does not verify will not verify on the next try either.
            raise TransportError(message, retryable=not isinstance(reason, ssl.SSLCertVerificationError)) from exc
        answer = _json_or_none(raw)
        if not isinstance(answer, dict):
            raise TransportError(f"{what} answered something that is not a JSON object: {raw[:_MAX_ERROR_TEXT]!r}")
        return answer


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _segment(value: str) -> str:
    # An id is one path segment: encode "/" and friends so it can never address another route.
    if not value or not value.strip():
        raise ConfigurationError("an id must not be empty")
    return quote(value, safe="")


def _connection_of(request: RequestView | Connection) -> Connection:
    if isinstance(request, Connection):
        return request
    if request.connection is None:
        raise ConfigurationError(f"request {request.request_id} has no connection details (status {request.status})")
    return request.connection
