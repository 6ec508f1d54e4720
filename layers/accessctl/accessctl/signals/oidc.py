"""OIDC ID token verification: the source of a human's identity, groups and MFA.

Checks, in order: the header's algorithm is on the allow-list (never ``none``, never HMAC, so a
public key can never be used as a shared secret); the key id is one the configured issuer
publishes (a token from another IdP names a key we do not have); the signature; issuer and
audience; expiry, not-before, issued-at and auth_time ages against an injected clock.
Signatures are checked by PyJWT (pyca/cryptography); nothing here is hand-rolled crypto.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import jwt
from pydantic import BaseModel, ConfigDict, Field, field_validator

from accessctl.errors import NotAuthenticatedError
from accessctl.signals.clock import require_aware
from accessctl.signals.model import Signal

SUPPORTED_ALGORITHMS = frozenset({"RS256", "ES256"})
# RFC 8176 authentication method references that mean a second factor was used.
DEFAULT_MFA_AMR = frozenset({"mfa", "otp", "hwk"})

JsonFetcher = Callable[[str], dict[str, Any]]


class IdTokenError(NotAuthenticatedError):
    """The ID token was not accepted; the message says why (safe to show to the caller)."""


class OidcSettings(BaseModel):
    """One trusted IdP. A token from any other issuer is refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str
    audience: str
    jwks_uri: str | None = Field(default=None, description="Default: discovered from the issuer's metadata.")
    allowed_algorithms: frozenset[str] = Field(default=frozenset({"RS256", "ES256"}))
    groups_claim: str = "groups"
    device_claim: str | None = "device_id"
    mfa_amr_values: frozenset[str] = DEFAULT_MFA_AMR
    max_token_age_seconds: int = Field(default=3600, ge=60)
    max_auth_age_seconds: int = Field(default=12 * 3600, ge=60)
    leeway_seconds: int = Field(default=60, ge=0, le=300)

    @field_validator("allowed_algorithms")
    @classmethod
    def _only_asymmetric(cls, value: frozenset[str]) -> frozenset[str]:
        if not value or not value <= SUPPORTED_ALGORITHMS:
            raise ValueError(f"allowed_algorithms must be a non-empty subset of {sorted(SUPPORTED_ALGORITHMS)}")
        return value


class VerifiedIdToken(BaseModel):
    """The claims accessctl uses from a token that passed every check (the token itself is not kept)."""

    model_config = ConfigDict(frozen=True)

    issuer: str
    subject: str
    audience: str
    issued_at: datetime
    expires_at: datetime
    auth_time: datetime | None = None
    amr: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    device_id: str | None = None
    email: str | None = None
    key_id: str
    algorithm: str


# ------------------------------------------------------------------ fetching keys


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fetch_json(url: str, timeout_seconds: float = 3.0) -> dict[str, Any]:
    """GET a JSON document over HTTPS (plain HTTP only to loopback, for local stacks and tests)."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and _is_loopback(parts.hostname)):
        raise IdTokenError(f"refusing to fetch keys over {parts.scheme or 'no scheme'}: {url} (HTTPS only)")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # scheme checked above
    with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
        document = json.loads(response.read(1_000_000))
    if not isinstance(document, dict):
        raise IdTokenError(f"{url} did not return a JSON object")
    return document


def discover_jwks_uri(issuer: str, fetch: JsonFetcher = fetch_json) -> str:
    """The issuer's jwks_uri from its OpenID metadata; the metadata must name the same issuer."""
    metadata = fetch(issuer.rstrip("/") + "/.well-known/openid-configuration")
    if metadata.get("issuer") != issuer:
        raise IdTokenError(f"the OpenID metadata at {issuer} names another issuer")
    jwks_uri = metadata.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise IdTokenError(f"the OpenID metadata of {issuer} has no jwks_uri")
    return jwks_uri


class JwksCache:
    """The issuer's signing keys, cached for ``ttl_seconds``.

    An unknown key id triggers one refetch (key rotation), at most every
    ``min_refresh_interval_seconds``, so tokens naming made-up key ids cannot make us hammer the IdP.
    """

    def __init__(
        self,
        jwks_uri: str,
        fetch: JsonFetcher = fetch_json,
        *,
        ttl_seconds: float = 3600,
        min_refresh_interval_seconds: float = 60,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jwks_uri = jwks_uri
        self._fetch = fetch
        self._ttl = ttl_seconds
        self._min_refresh = min_refresh_interval_seconds
        self._monotonic = monotonic
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def of_keys(cls, jwks: dict[str, Any]) -> JwksCache:
        """A cache that serves a fixed key set (tests, or keys pinned in configuration)."""
        return cls("static:", lambda _url: jwks, ttl_seconds=float("inf"), min_refresh_interval_seconds=float("inf"))

    def key(self, key_id: str) -> jwt.PyJWK | None:
        with self._lock:
            now = self._monotonic()
            expired = self._fetched_at is None or now - self._fetched_at >= self._ttl
            may_refetch = self._fetched_at is None or now - self._fetched_at >= self._min_refresh
            if expired or (key_id not in self._keys and may_refetch):
                self._refresh(now)
            return self._keys.get(key_id)

    def _refresh(self, now: float) -> None:
        document = self._fetch(self.jwks_uri)
        keys: dict[str, jwt.PyJWK] = {}
        for entry in document.get("keys", []):
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str) or entry.get("use", "sig") != "sig":
                continue
            try:
                keys[entry["kid"]] = jwt.PyJWK.from_dict(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError):
                continue  # a key type we do not support cannot verify anything we accept
        self._keys = keys
        self._fetched_at = now


# ------------------------------------------------------------------ verifying


def _epoch(claims: dict[str, Any], name: str, *, required: bool) -> datetime | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise IdTokenError(f"ID token has no {name} claim")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise IdTokenError(f"ID token claim {name} is not a number")
    return datetime.fromtimestamp(value, UTC)


class IdTokenVerifier:
    def __init__(self, settings: OidcSettings, jwks: JwksCache) -> None:
        self.settings = settings
        self.jwks = jwks

    def verify(self, token: str, now: datetime) -> VerifiedIdToken:
        """Every check, or :class:`IdTokenError` naming the first that failed."""
        require_aware(now)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as error:
            raise IdTokenError("ID token is not a JWT") from error
        algorithm = header.get("alg")
        if algorithm not in self.settings.allowed_algorithms:
            raise IdTokenError(
                f"ID token algorithm {algorithm!r} is not allowed (allowed: {sorted(self.settings.allowed_algorithms)})"
            )
        key_id = header.get("kid")
        if not isinstance(key_id, str):
            raise IdTokenError("ID token header names no key id (kid)")
        key = self.jwks.key(key_id)
        if key is None:
            raise IdTokenError(f"ID token is signed with a key {self.settings.issuer} does not publish (another IdP?)")
        self._check_key_fits(key, algorithm)
        claims = self._decode(token, key, algorithm)
        return self._checked_claims(claims, now, key_id=key_id, algorithm=algorithm)

    @staticmethod
    def _check_key_fits(key: jwt.PyJWK, algorithm: str) -> None:
        # A key published for (or only usable with) one algorithm must not verify another:
        # PyJWK derives algorithm_name from the key's alg, or its kty and curve.
        if key.algorithm_name != algorithm:
            raise IdTokenError(f"ID token uses {algorithm} but its key is for {key.algorithm_name}")

    def _decode(self, token: str, key: jwt.PyJWK, algorithm: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                # Times are checked below against the injected clock, not the process clock.
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": ["iss", "aud", "sub", "exp", "iat"],
                },
            )
        except jwt.InvalidSignatureError as error:
            raise IdTokenError("ID token signature is invalid") from error
        except jwt.InvalidAudienceError as error:
            raise IdTokenError(f"ID token is not meant for this audience ({self.settings.audience})") from error
        except jwt.InvalidIssuerError as error:
            raise IdTokenError(f"ID token was not issued by {self.settings.issuer}") from error
        except jwt.MissingRequiredClaimError as error:
            raise IdTokenError(f"ID token has no {error.claim} claim") from error
        except jwt.InvalidTokenError as error:
            raise IdTokenError(f"ID token is invalid: {error}") from error
        return claims

    def _checked_claims(self, claims: dict[str, Any], now: datetime, *, key_id: str, algorithm: str) -> VerifiedIdToken:
        settings = self.settings
        leeway = settings.leeway_seconds
        expires_at = _epoch(claims, "exp", required=True)
        issued_at = _epoch(claims, "iat", required=True)
        not_before = _epoch(claims, "nbf", required=False)
        auth_time = _epoch(claims, "auth_time", required=False)
        assert expires_at is not None and issued_at is not None
        now_seconds = now.timestamp()
        if now_seconds >= expires_at.timestamp() + leeway:
            raise IdTokenError("ID token has expired")
        if not_before is not None and now_seconds + leeway < not_before.timestamp():
            raise IdTokenError("ID token is not valid yet (nbf)")
        if issued_at.timestamp() > now_seconds + leeway:
            raise IdTokenError("ID token was issued in the future (iat)")
        if now_seconds - issued_at.timestamp() > settings.max_token_age_seconds + leeway:
            raise IdTokenError(f"ID token is too old (issued more than {settings.max_token_age_seconds} s ago)")
        if auth_time is not None and now_seconds - auth_time.timestamp() > settings.max_auth_age_seconds + leeway:
            raise IdTokenError(
                f"the sign-in behind this ID token is too old (more than {settings.max_auth_age_seconds} s)"
            )
        audience = claims["aud"]
        groups = claims.get(settings.groups_claim, [])
        amr = claims.get("amr", [])
        device_id = claims.get(settings.device_claim) if settings.device_claim else None
        return VerifiedIdToken(
            issuer=claims["iss"],
            subject=str(claims["sub"]),
            audience=audience if isinstance(audience, str) else settings.audience,
            issued_at=issued_at,
            expires_at=expires_at,
            auth_time=auth_time,
            amr=[str(item) for item in amr] if isinstance(amr, list) else [],
            groups=[str(item) for item in groups] if isinstance(groups, list) else [],
            device_id=device_id if isinstance(device_id, str) else None,
            email=claims.get("email") if isinstance(claims.get("email"), str) else None,
            key_id=key_id,
            algorithm=algorithm,
        )


# ------------------------------------------------------------------ signals


def identity_signals(token: VerifiedIdToken | None, settings: OidcSettings, now: datetime) -> dict[str, Signal]:
    """The human signals (mfa, mfa_age_seconds, groups) from a verified token, or why they are unknown."""
    if token is None:
        return {
            "mfa": Signal.absent("no verified ID token: MFA unknown"),
            "mfa_age_seconds": Signal.absent("no verified ID token: MFA age unknown"),
            "groups": Signal.absent("no verified ID token: groups unknown"),
        }
    source = f"oidc id_token (issuer {token.issuer}, kid {token.key_id})"
    strong = sorted(set(token.amr) & settings.mfa_amr_values)
    if strong:
        mfa = Signal.of(True, f"{source} amr", note=f"your ID token shows MFA (amr: {', '.join(token.amr)})")
    else:
        shown = ", ".join(token.amr) if token.amr else "none"
        mfa = Signal.of(False, f"{source} amr", note=f"your ID token has no MFA claim (amr: {shown})")
    authenticated_at = token.auth_time or token.issued_at
    age = max(0, int(require_aware(now).timestamp() - authenticated_at.timestamp()))
    claim = "auth_time" if token.auth_time else "iat"
    return {
        "mfa": mfa,
        "mfa_age_seconds": Signal.of(age, f"{source} {claim}", note=f"you signed in {age // 60} minutes ago"),
        "groups": Signal.of(
            sorted(token.groups),
            f"{source} claim {settings.groups_claim}",
            note=f"your groups: {', '.join(sorted(token.groups)) or 'none'}",
        ),
    }
