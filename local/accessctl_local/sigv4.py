"""Verify AWS Signature Version 4 on incoming requests, as API Gateway's AWS_IAM authorisation does.

The signature is recomputed with botocore's own ``SigV4Auth`` over exactly the headers the client
listed in ``SignedHeaders`` and compared in constant time. The secret comes from the emulator (IAM
user access keys, STS assumed-role sessions) through a lookup function.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

from .moto_patches import ResolvedCredentials

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=5)
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_AUTH_PARAM = re.compile(r"(\w+)=([^,\s]+)")

CredentialLookup = Callable[[str, str | None], ResolvedCredentials | None]


class SignatureError(Exception):
    """Authentication failed; ``message`` is what API Gateway would put in its 403 body."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class SignedRequest:
    """The parts of an HTTP request that SigV4 covers. ``headers`` keeps repeated headers."""

    method: str
    raw_path: str  # path plus "?query", exactly as received (percent-encoded)
    headers: Sequence[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return ",".join(values) if values else None

    def header_values(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]


@dataclass(frozen=True)
class _Authorization:
    access_key_id: str
    scope_date: str
    signed_headers: list[str]
    signature: str


def verify(
    request: SignedRequest,
    region: str,
    lookup: CredentialLookup,
    service: str = "execute-api",
    now: datetime | None = None,
) -> ResolvedCredentials:
    """Return the caller's credentials if the request carries a valid signature, else raise ``SignatureError``."""
    auth = _parse_authorization(request, region, service)
    amz_date = _check_date(request, auth, now or datetime.now(UTC))
    _check_signed_parts(request, auth)
    caller = lookup(auth.access_key_id, request.header("X-Amz-Security-Token"))
    if caller is None:
        raise SignatureError("The security token included in the request is invalid.")
    if caller.expired:
        raise SignatureError("The security token included in the request is expired")
    expected = _signature(request, auth.signed_headers, caller, region, service, amz_date)
    if not hmac.compare_digest(expected, auth.signature):
        raise SignatureError(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
            "Access Key and signing method. Consult the service documentation for details."
        )
    return caller


def _parse_authorization(request: SignedRequest, region: str, service: str) -> _Authorization:
    authorization = request.header("Authorization")
    if not authorization:
        raise SignatureError("Missing Authentication Token")
    algorithm, _, params_text = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureError(f"Authorization header requires the {ALGORITHM} algorithm.")
    params = dict(_AUTH_PARAM.findall(params_text))
    try:
        credential, signed_headers, signature = params["Credential"], params["SignedHeaders"], params["Signature"]
    except KeyError as missing:
        raise SignatureError(f"Authorization header requires '{missing.args[0]}' parameter.") from None
    scope = credential.split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise SignatureError("Credential is not of the form ACCESS_KEY/DATE/REGION/SERVICE/aws4_request.")
    if scope[3] != service:
        raise SignatureError(f"Credential should be scoped to correct service: '{service}'.")
    if scope[2] != region:
        raise SignatureError(f"Credential should be scoped to a valid region, not '{scope[2]}'.")
    return _Authorization(scope[0], scope[1], signed_headers.lower().split(";"), signature)


def _check_date(request: SignedRequest, auth: _Authorization, now: datetime) -> str:
    amz_date = request.header("X-Amz-Date")
    if not amz_date:
        raise SignatureError("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    try:
        signed_at = datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError(f"Invalid X-Amz-Date '{amz_date}'.") from None
    if signed_at < now - MAX_SKEW:
        raise SignatureError(
            f"Signature expired: {amz_date} is now earlier than {(now - MAX_SKEW).strftime(_AMZ_DATE)} "
            f"({now.strftime(_AMZ_DATE)} - 5 min.)"
        )
    if signed_at > now + MAX_SKEW:
        raise SignatureError(
            f"Signature not yet current: {amz_date} is still later than {(now + MAX_SKEW).strftime(_AMZ_DATE)} "
            f"({now.strftime(_AMZ_DATE)} + 5 min.)"
        )
    if auth.scope_date != amz_date[:8]:
        raise SignatureError("Credential date does not match X-Amz-Date.")
    return amz_date


def _check_signed_parts(request: SignedRequest, auth: _Authorization) -> None:
    if "host" not in auth.signed_headers:
        raise SignatureError("'Host' must be a signed header.")
    for name in auth.signed_headers:
        if not request.header_values(name):
            raise SignatureError(f"Signed header '{name}' is missing from the request.")
    content_sha = request.header("X-Amz-Content-SHA256")
    if content_sha is not None and not hmac.compare_digest(content_sha, hashlib.sha256(request.body).hexdigest()):
        # API Gateway signs the body it receives; an unsigned or mismatched payload hash is a forgery.
        raise SignatureError("The request body does not match X-Amz-Content-SHA256.")


class _ExactHeadersSigV4(SigV4Auth):
    """botocore's SigV4 over exactly the client's SignedHeaders (botocore would pick its own set)."""

    def __init__(self, credentials: Credentials, service: str, region: str, signed: Mapping[str, list[str]]) -> None:
        super().__init__(credentials, service, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        header_map = HTTPHeaders()
        for name, values in self._signed.items():
            for value in values:
                header_map[name] = value
        return header_map


def _signature(
    request: SignedRequest,
    signed_headers: list[str],
    caller: ResolvedCredentials,
    region: str,
    service: str,
    amz_date: str,
) -> str:
    signed = {name: request.header_values(name) for name in signed_headers}
    aws_request = AWSRequest(
        method=request.method,
        url=f"http://{request.header('Host') or 'localhost'}{request.raw_path}",
        headers={k: ",".join(v) for k, v in signed.items()},
        data=request.body,
    )
    aws_request.context["timestamp"] = amz_date
    auth = _ExactHeadersSigV4(
        Credentials(caller.access_key_id, caller.secret_access_key, caller.session_token), service, region, signed
    )
    canonical = auth.canonical_request(aws_request)
    return str(auth.signature(auth.string_to_sign(aws_request, canonical), aws_request))


def sign(
    method: str,
    url: str,
    region: str,
    access_key_id: str,
    secret_access_key: str,
    session_token: str | None = None,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    service: str = "execute-api",
    at: datetime | None = None,
) -> dict[str, str]:
    """Headers that sign a request the way AWS SDKs do (for clients and tests of the local API).

    ``at`` signs as of another moment (tests of the 5-minute window); default now.
    """
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    credentials = Credentials(access_key_id, secret_access_key, session_token)
    if at is None:
        SigV4Auth(credentials, service, region).add_auth(request)
    else:
        _AtTimeSigV4(credentials, service, region, at).add_auth(request)
    return dict(request.headers.items())


class _AtTimeSigV4(SigV4Auth):
    """botocore's signer with the clock fixed (``add_auth`` otherwise reads the current time)."""

    def __init__(self, credentials: Credentials, service: str, region: str, at: datetime) -> None:
        super().__init__(credentials, service, region)
        self._at = at.astimezone(UTC)

    def add_auth(self, request: AWSRequest) -> None:
        request.context["timestamp"] = self._at.strftime(_AMZ_DATE)
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        self._inject_signature_to_request(request, self.signature(self.string_to_sign(request, canonical), request))
