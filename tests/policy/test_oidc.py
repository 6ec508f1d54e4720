"""ID token verification: every way a token must be refused, keys served from a loopback JWKS."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from accessctl.signals.oidc import (
    IdTokenError,
    IdTokenVerifier,
    JwksCache,
    OidcSettings,
    discover_jwks_uri,
    fetch_json,
    identity_signals,
)

NOW = datetime(2027, 3, 24, 9, 0, tzinfo=UTC)
AUDIENCE = "accessctl"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_IDP_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwks() -> dict[str, Any]:
    rsa_jwk = json.loads(RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    ec_jwk = json.loads(ECAlgorithm.to_jwk(EC_KEY.public_key()))
    return {"keys": [{**rsa_jwk, "kid": "rsa-1", "use": "sig"}, {**ec_jwk, "kid": "ec-1", "use": "sig"}]}


class _IdP(BaseHTTPRequestHandler):
    issuer = ""
    jwks: dict[str, Any] = {}
    fetches = 0

    def do_GET(self) -> None:
        if self.path == "/.well-known/openid-configuration":
            body = {"issuer": _IdP.issuer, "jwks_uri": _IdP.issuer + "/jwks"}
        elif self.path == "/jwks":
            _IdP.fetches += 1
            body = _IdP.jwks
        else:
            self.send_error(404)
            return
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def idp() -> Iterator[str]:
    """A loopback IdP serving OpenID metadata and a JWKS."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _IdP)
    _IdP.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    _IdP.jwks = _jwks()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield _IdP.issuer
    server.shutdown()
    server.server_close()


@pytest.fixture
def verifier(idp: str) -> IdTokenVerifier:
    settings = OidcSettings(issuer=idp, audience=AUDIENCE)
    return IdTokenVerifier(settings, JwksCache(discover_jwks_uri(idp)))


def token(issuer: str, *, key: Any = RSA_KEY, algorithm: str = "RS256", kid: str = "rsa-1", **claims: Any) -> str:
    payload: dict[str, Any] = {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": "alice",
        "email": "alice@example.com",
        "iat": int((NOW - timedelta(minutes=5)).timestamp()),
        "auth_time": int((NOW - timedelta(minutes=10)).timestamp()),
        "exp": int((NOW + timedelta(minutes=55)).timestamp()),
        "amr": ["pwd", "mfa"],
        "groups": ["dba", "oncall"],
        "device_id": "laptop-1",
    }
    payload.update(claims)
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


def test_given_a_good_rs256_token_when_verifying_then_its_claims_become_signals(
    verifier: IdTokenVerifier, idp: str
) -> None:
    verified = verifier.verify(token(idp), NOW)
    assert (verified.subject, verified.groups, verified.device_id) == ("alice", ["dba", "oncall"], "laptop-1")
    signals = identity_signals(verified, verifier.settings, NOW)
    assert signals["mfa"].value is True
    assert signals["mfa"].source.startswith(f"oidc id_token (issuer {idp}, kid rsa-1)")  # type: ignore[union-attr]
    assert signals["mfa_age_seconds"].value == 600
    assert signals["groups"].value == ["dba", "oncall"]


def test_given_a_good_es256_token_when_verifying_then_it_is_accepted(verifier: IdTokenVerifier, idp: str) -> None:
    assert verifier.verify(token(idp, key=EC_KEY, algorithm="ES256", kid="ec-1"), NOW).algorithm == "ES256"


def test_given_a_token_without_an_mfa_amr_when_reading_signals_then_mfa_is_false_and_says_why(
    verifier: IdTokenVerifier, idp: str
) -> None:
    verified = verifier.verify(token(idp, amr=["pwd"]), NOW)
    mfa = identity_signals(verified, verifier.settings, NOW)["mfa"]
    assert mfa.value is False
    assert mfa.note == "your ID token has no MFA claim (amr: pwd)"


def test_given_no_token_when_reading_signals_then_every_human_signal_is_missing_with_a_reason() -> None:
    signals = identity_signals(None, OidcSettings(issuer="https://idp.example.com", audience=AUDIENCE), NOW)
    assert {name: signal.missing for name, signal in signals.items()} == {
        "mfa": "no verified ID token: MFA unknown",
        "mfa_age_seconds": "no verified ID token: MFA age unknown",
        "groups": "no verified ID token: groups unknown",
    }


def _forged_tokens(issuer: str) -> dict[str, str]:
    header, payload, _ = token(issuer).split(".")
    _, _, other_signature = token(issuer, key=OTHER_IDP_KEY).split(".")
    claims = {"iss": issuer, "aud": AUDIENCE, "sub": "x"}
    return {
        "bad signature": f"{header}.{payload}.{other_signature}",
        "alg none": jwt.encode(claims, None, algorithm="none", headers={"kid": "rsa-1"}),
        # HMAC tokens are how public keys get abused as shared secrets: refused before any key is used.
        "alg HS256": jwt.encode(claims, "s" * 32, algorithm="HS256", headers={"kid": "rsa-1"}),
    }


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("bad signature", "signature is invalid"),
        ("alg none", "algorithm 'none' is not allowed"),
        ("alg HS256", "algorithm 'HS256' is not allowed"),
    ],
)
def test_given_a_forged_token_when_verifying_then_it_is_refused(
    verifier: IdTokenVerifier, idp: str, case: str, expected: str
) -> None:
    with pytest.raises(IdTokenError, match=expected):
        verifier.verify(_forged_tokens(idp)[case], NOW)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda iss: token(iss, aud="someone-else"), "not meant for this audience"),
        (lambda iss: token("https://evil.example.com"), "was not issued by"),
        (lambda iss: token(iss, exp=int((NOW - timedelta(minutes=2)).timestamp())), "has expired"),
        (lambda iss: token(iss, iat=int((NOW - timedelta(hours=3)).timestamp())), "too old"),
        (
            lambda iss: token(iss, auth_time=int((NOW - timedelta(days=2)).timestamp())),
            "sign-in behind this ID token is too old",
        ),
        (lambda iss: token(iss, iat=int((NOW + timedelta(hours=1)).timestamp())), "issued in the future"),
        (lambda iss: token(iss, nbf=int((NOW + timedelta(hours=1)).timestamp())), "not valid yet"),
        (lambda iss: token(iss, exp=None), "no exp claim"),
        (lambda iss: token(iss, key=OTHER_IDP_KEY, kid="other-idp-key"), "does not publish"),
        (lambda iss: token(iss, key=EC_KEY, algorithm="ES256", kid="rsa-1"), "key is for RS256"),
        (lambda iss: "not-a-jwt", "not a JWT"),
    ],
)
def test_given_an_invalid_token_when_verifying_then_it_is_refused_saying_why(
    verifier: IdTokenVerifier, idp: str, make: Any, expected: str
) -> None:
    with pytest.raises(IdTokenError, match=expected):
        verifier.verify(make(idp), NOW)


def test_given_a_rotated_key_when_a_token_names_it_then_the_jwks_is_fetched_again_once(idp: str) -> None:
    ticks = iter([0.0, 10.0, 120.0, 121.0])
    cache = JwksCache(idp + "/jwks", min_refresh_interval_seconds=60, monotonic=lambda: next(ticks))
    before = _IdP.fetches
    assert cache.key("rsa-1") is not None  # first fetch
    assert cache.key("new-key") is None  # 10 s later: too soon to refetch
    assert cache.key("new-key") is None  # 120 s: refetched, still unknown
    assert cache.key("rsa-1") is not None  # cached
    assert _IdP.fetches - before == 2


def test_given_static_keys_when_verifying_then_no_network_is_needed() -> None:
    settings = OidcSettings(issuer="https://idp.example.com", audience=AUDIENCE)
    verifier = IdTokenVerifier(settings, JwksCache.of_keys(_jwks()))
    assert verifier.verify(token("https://idp.example.com"), NOW).subject == "alice"


@pytest.mark.parametrize("url", ["http://idp.example.com/jwks", "file:///etc/passwd", "ftp://idp.example.com/jwks"])
def test_given_a_non_https_url_when_fetching_keys_then_it_is_refused(url: str) -> None:
    with pytest.raises(IdTokenError, match="HTTPS only"):
        fetch_json(url)


@pytest.mark.parametrize("algorithms", [frozenset({"HS256"}), frozenset({"none"}), frozenset()])
def test_given_a_symmetric_or_empty_algorithm_list_when_configuring_then_it_is_refused(
    algorithms: frozenset[str],
) -> None:
    with pytest.raises(ValueError, match="allowed_algorithms"):
        OidcSettings(issuer="https://idp.example.com", audience=AUDIENCE, allowed_algorithms=algorithms)
