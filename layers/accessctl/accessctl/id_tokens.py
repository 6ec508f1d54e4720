"""The company IdP's ID token, as the one trusted source of a human's MFA and group membership.

A caller may send an OIDC ID token in the ``X-Accessctl-Id-Token`` header next to its SigV4
signature. It is verified here (signature against the IdP's JWKS, issuer, audience, expiry, age);
only the verified claims are kept with the request, never the token itself. A token that fails
any check refuses the request (401); no token leaves the signals it would carry missing, so any
rule that needs them fails closed.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache

from accessctl.config import Settings
from accessctl.errors import BadRequestError
from accessctl.signals.oidc import (
    IdTokenVerifier,
    JwksCache,
    OidcSettings,
    VerifiedIdToken,
    discover_jwks_uri,
    fetch_json,
)

ID_TOKEN_HEADER = "X-Accessctl-Id-Token"


def oidc_settings(settings: Settings) -> OidcSettings | None:
    if not (settings.oidc_issuer and settings.oidc_audience):
        return None
    return OidcSettings(
        issuer=settings.oidc_issuer,
        audience=settings.oidc_audience,
        jwks_uri=settings.oidc_jwks_uri,
        groups_claim=settings.oidc_groups_claim,
    )


@cache
def _verifier(oidc: OidcSettings) -> IdTokenVerifier:
    # One JWKS cache per process: keys are fetched once and refreshed on an unknown key id.
    jwks_uri = oidc.jwks_uri or discover_jwks_uri(oidc.issuer, fetch_json)
    return IdTokenVerifier(oidc, JwksCache(jwks_uri))


def verify_id_token(raw_token: str | None, settings: Settings, now: datetime) -> VerifiedIdToken | None:
    if raw_token is None or not raw_token.strip():
        return None
    oidc = oidc_settings(settings)
    if oidc is None:
        raise BadRequestError("this deployment accepts no ID tokens: no identity provider is configured")
    return _verifier(oidc).verify(raw_token.strip(), now)
