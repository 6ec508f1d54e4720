"""Local API Gateway (REST, Lambda proxy integration) over real HTTP.

Routes come from the translated ``AWS::ApiGateway::RestApi`` ``Body`` (the OpenAPI document SAM
generates from ``Api`` events): path template, method, integrated function and whether the method
uses ``AWS_IAM``. For AWS_IAM methods the request's SigV4 signature is verified against the
emulator's credentials before anything else; the identity in ``requestContext.identity`` comes
only from that verification. URLs look like API Gateway's: ``http://127.0.0.1:PORT/{stage}/{path}``.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .moto_patches import ResolvedCredentials
from .provision import Deployment
from .runtime import LambdaRuntime
from .sigv4 import CredentialLookup, SignatureError, SignedRequest, verify

log = logging.getLogger(__name__)

_INTEGRATION_URI = re.compile(r"functions/(arn:aws[\w-]*:lambda:[^/]+)/invocations")
_ANY = "ANY"


@dataclass(frozen=True)
class Route:
    api_id: str
    stage: str
    method: str  # upper case, or "ANY"
    resource: str  # template path, e.g. /requests/{request_id}
    function_arn: str
    iam_auth: bool
    pattern: re.Pattern[str]

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.method not in (method, _ANY):
            return None
        found = self.pattern.fullmatch(path)
        return None if found is None else {k: unquote(v) for k, v in found.groupdict().items()}


def _compile(resource: str) -> re.Pattern[str]:
    parts = []
    for segment in resource.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("+}"):
            parts.append(f"(?P<{_group(segment[1:-2])}>.+)")
        elif segment.startswith("{") and segment.endswith("}"):
            parts.append(f"(?P<{_group(segment[1:-1])}>[^/]+)")
        else:
            parts.append(re.escape(segment))
    return re.compile("/" + "/".join(parts))


def _group(name: str) -> str:
    if not name.isidentifier():
        raise ValueError(f"unsupported path parameter name {name!r}")
    return name


def routes_from_deployment(deployment: Deployment) -> list[Route]:
    """Every (stage, method, path) of every RestApi in the stack, most specific first."""
    stages: dict[str, list[str]] = {}
    for resource in deployment.resources.values():
        if resource.type == "AWS::ApiGateway::Stage":
            stages.setdefault(resource.properties["RestApiId"], []).append(resource.properties["StageName"])
    functions_by_arn = {f["arn"]: f for f in deployment.functions.values()}
    routes: list[Route] = []
    for resource in deployment.resources.values():
        if resource.type != "AWS::ApiGateway::RestApi":
            continue
        body = resource.properties.get("Body") or {}
        iam_schemes = {
            name
            for name, scheme in body.get(
                "securityDefinitions", body.get("components", {}).get("securitySchemes", {})
            ).items()
            if scheme.get("x-amazon-apigateway-authtype") == "awsSigv4"
        }
        default_security = body.get("security", [])
        for path, methods in body.get("paths", {}).items():
            for method, operation in methods.items():
                integration = operation.get("x-amazon-apigateway-integration", {})
                found = _INTEGRATION_URI.search(str(integration.get("uri", "")))
                if not found or found.group(1) not in functions_by_arn:
                    log.warning("route %s %s has no local Lambda integration; not served", method, path)
                    continue
                security = operation.get("security", default_security)
                iam = any(name in iam_schemes for requirement in security for name in requirement)
                verb = _ANY if method == "x-amazon-apigateway-any-method" else method.upper()
                for stage in stages.get(resource.physical_id, []):
                    routes.append(Route(resource.physical_id, stage, verb, path, found.group(1), iam, _compile(path)))
    # Literal segments beat parameters, which beat greedy parameters, as in API Gateway.
    return sorted(routes, key=lambda r: ("+}" in r.resource, r.resource.count("{"), -len(r.resource)))


class LocalApi:
    """Serves ``routes`` on 127.0.0.1, invoking functions through ``runtime``."""

    def __init__(
        self,
        routes: list[Route],
        runtime: LambdaRuntime,
        region: str,
        account_id: str,
        lookup: CredentialLookup,
        port: int = 0,
        host: str = "127.0.0.1",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.routes = routes
        self.runtime = runtime
        self.region = region
        self.account_id = account_id
        self.lookup = lookup
        self.clock = clock or (lambda: datetime.now(UTC))
        self._server = ThreadingHTTPServer((host, port), _make_handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, stage: str | None = None) -> str:
        stage = stage or (self.routes[0].stage if self.routes else "")
        return f"{self.base_url}/{stage}" if stage else self.base_url

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="accessctl-local-api", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    # -------------------------------------------------------------- request handling

    def handle(
        self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes, peer: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        request_id = str(uuid.uuid4())
        split = urlsplit(raw_path)
        stage, _, rest = split.path.lstrip("/").partition("/")
        path = "/" + rest
        for route in self.routes:
            if route.stage != stage:
                continue
            params = route.match(method, path)
            if params is None:
                continue
            caller: ResolvedCredentials | None = None
            if route.iam_auth:
                try:
                    caller = verify(
                        SignedRequest(method, raw_path, headers, body), self.region, self.lookup, now=self.clock()
                    )
                except SignatureError as denied:
                    return _json(403, {"message": denied.message}, request_id, error_type="AccessDeniedException")
            event = self._event(
                route, method, split.path, path, split.query, params, headers, body, peer, caller, request_id
            )
            return self._invoke(route, event, request_id)
        # API Gateway answers an unknown resource/method this way, not with 404.
        return _json(
            403,
            {"message": "Missing Authentication Token"},
            request_id,
            error_type="MissingAuthenticationTokenException",
        )

    def _event(
        self,
        route: Route,
        method: str,
        full_path: str,
        path: str,
        query: str,
        params: dict[str, str],
        headers: list[tuple[str, str]],
        body: bytes,
        peer: str,
        caller: ResolvedCredentials | None,
        request_id: str,
    ) -> dict[str, Any]:
        single_headers: dict[str, str] = {}
        multi_headers: dict[str, list[str]] = {}
        for name, value in headers:
            single_headers[name] = value
            multi_headers.setdefault(name, []).append(value)
        pairs = parse_qsl(query, keep_blank_values=True)
        multi_query: dict[str, list[str]] = {}
        for name, value in pairs:
            multi_query.setdefault(name, []).append(value)
        try:
            text_body: str | None = body.decode("utf-8") if body else None
            is_base64 = False
        except UnicodeDecodeError:
            text_body, is_base64 = base64.b64encode(body).decode(), True
        now = self.clock()
        user_agent = single_headers.get("User-Agent") or next(
            (v for k, v in headers if k.lower() == "user-agent"), None
        )
        identity = {
            "cognitoIdentityPoolId": None,
            "cognitoIdentityId": None,
            "cognitoAuthenticationType": None,
            "cognitoAuthenticationProvider": None,
            "principalOrgId": None,
            "apiKey": None,
            "apiKeyId": None,
            "sourceIp": peer,
            "userAgent": user_agent,
            # Only a verified signature fills these: they are what the API function trusts.
            "accountId": caller.account_id if caller else None,
            "caller": caller.user_id if caller else None,
            "user": caller.user_id if caller else None,
            "userArn": caller.arn if caller else None,
            "accessKey": caller.access_key_id if caller else None,
        }
        return {
            "resource": route.resource,
            "path": path,
            "httpMethod": method,
            "headers": single_headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": params or None,
            "stageVariables": None,
            "body": text_body,
            "isBase64Encoded": is_base64,
            "requestContext": {
                "resourceId": route.resource,
                "resourcePath": route.resource,
                "httpMethod": method,
                "extendedRequestId": request_id,
                "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "requestTimeEpoch": int(now.timestamp() * 1000),
                "path": full_path,
                "accountId": self.account_id,
                "protocol": "HTTP/1.1",
                "stage": route.stage,
                "domainPrefix": route.api_id,
                "domainName": f"{route.api_id}.execute-api.{self.region}.amazonaws.com",
                "requestId": request_id,
                "apiId": route.api_id,
                "identity": identity,
            },
        }

    def _invoke(self, route: Route, event: dict[str, Any], request_id: str) -> tuple[int, list[tuple[str, str]], bytes]:
        result = self.runtime.invoke(route.function_arn, event)
        response = result.payload
        if result.errored or not isinstance(response, dict) or "statusCode" not in response:
            if result.errored:
                log.error("%s %s: function error %s", event["httpMethod"], event["path"], response)
            else:
                log.error("%s %s: malformed Lambda proxy response %r", event["httpMethod"], event["path"], response)
            return _json(502, {"message": "Internal server error"}, request_id)
        headers: list[tuple[str, str]] = [(k, str(v)) for k, v in (response.get("headers") or {}).items()]
        for name, values in (response.get("multiValueHeaders") or {}).items():
            headers.extend((name, str(v)) for v in values)
        headers.append(("x-amzn-RequestId", request_id))
        raw = response.get("body") or ""
        body = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode()
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", "application/json"))
        return int(response["statusCode"]), headers, body


def _json(
    status: int, payload: dict[str, Any], request_id: str, error_type: str | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", request_id)]
    if error_type:
        headers.append(("x-amzn-ErrorType", error_type))
    return status, headers, json.dumps(payload).encode()


def _make_handler(api: LocalApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "accessctl-local-api"

        def _serve(self) -> None:
            started = time.monotonic()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = list(self.headers.items())
            try:
                status, out_headers, out_body = api.handle(
                    self.command, self.path, headers, body, self.client_address[0]
                )
            except Exception:  # the server must answer, as API Gateway does, whatever broke
                log.exception("local API failed on %s %s", self.command, self.path)
                status, out_headers, out_body = _json(500, {"message": "Internal server error"}, str(uuid.uuid4()))
            self.send_response(status)
            for name, value in out_headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(out_body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(out_body)
            log.debug("%s %s -> %s in %.1f ms", self.command, self.path, status, (time.monotonic() - started) * 1000)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("local API: " + format, *args)

    return Handler
