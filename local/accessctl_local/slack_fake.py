"""A fake Slack Web API on 127.0.0.1, for tests and the local stack.

    with FakeSlack(token="xoxb-test") as slack:
        slack.add_user("U0001", team_id="T0001", email="alice@example.com")
        api = SlackApi("xoxb-test", base_url=slack.api_url)
        ...
        slack.calls("chat.postMessage"), slack.messages_in("C0APPROVE"), slack.dm_messages("U0001")
        slack.wait_for(lambda: slack.messages_in("C0APPROVE"))

It answers the methods accessctl uses (``chat.postMessage``, ``chat.update``, ``chat.postEphemeral``,
``conversations.open``, ``users.info``) at ``{api_url}{method}`` the way Slack does: form or JSON
bodies, the bot token as ``Authorization: Bearer`` (or a ``token`` form field), HTTP 200 with
``{"ok": false, "error": ...}`` for refusals, and HTTP 429 with ``Retry-After`` when rate limited
(:meth:`FakeSlack.rate_limit`). :meth:`FakeSlack.response_url` hands out ``response_url`` targets,
which record what is posted to them. Every call is recorded, thread-safely.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

HOST = "127.0.0.1"
DEFAULT_TOKEN = "xoxb-local-fake-token"
RESPONSE_URL_USES = 5  # Slack accepts five answers per response_url

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class SlackCall:
    """One request the fake received: the API method (or ``response_url``), its arguments and headers."""

    method: str
    args: dict[str, Any]
    headers: dict[str, str]


@dataclass
class _Failure:
    error: str
    times: int
    status: int = 200
    retry_after: int | None = None


@dataclass
class _ResponseTarget:
    uses: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)


class FakeSlack:
    """The fake server. Start it with ``with FakeSlack() as slack:`` (or :meth:`start`/:meth:`stop`)."""

    def __init__(self, token: str = DEFAULT_TOKEN, *, team_id: str = "T0LOCAL01", port: int = 0) -> None:
        self.token = token
        self.team_id = team_id
        self._port = port
        self._lock = threading.Lock()
        self._calls: list[SlackCall] = []
        self._users: dict[str, dict[str, Any]] = {}
        self._messages: dict[str, list[dict[str, Any]]] = {}
        self._ephemeral: list[dict[str, Any]] = []
        self._failures: dict[str, _Failure] = {}
        self._responses: dict[str, _ResponseTarget] = {}
        self._sequence = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeSlack:
        server = ThreadingHTTPServer((HOST, self._port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        # A short poll interval: stop() waits for it.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-slack", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake Slack is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def api_url(self) -> str:
        """The Web API base URL (``Settings.slack_api_url``): ends with '/', like Slack's."""
        return f"{self.base_url}/api/"

    # ------------------------------------------------------------------ set-up by the test

    def add_user(
        self,
        user_id: str,
        team_id: str | None = None,
        email: str | None = None,
        confirmed: bool = True,
        deleted: bool = False,
        is_bot: bool = False,
        *,
        restricted: bool = False,
        ultra_restricted: bool = False,
        real_name: str | None = None,
    ) -> None:
        """A workspace member as ``users.info`` shows it."""
        name = real_name or (email.split("@")[0] if email else user_id)
        profile: dict[str, Any] = {"real_name": name, "display_name": name}
        if email is not None:
            profile["email"] = email
        with self._lock:
            self._users[user_id] = {
                "id": user_id,
                "team_id": team_id or self.team_id,
                "name": name.lower().replace(" ", "."),
                "real_name": name,
                "deleted": deleted,
                "is_bot": is_bot,
                "is_admin": False,
                "is_restricted": restricted,
                "is_ultra_restricted": ultra_restricted,
                "is_email_confirmed": confirmed,
                "tz": "Europe/Berlin",
                "profile": profile,
            }

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 0) -> None:
        """Answer the next ``times`` calls of ``method`` with HTTP 429, ``Retry-After`` and ``ratelimited``."""
        with self._lock:
            self._failures[method] = _Failure("ratelimited", times, status=429, retry_after=retry_after)

    def fail(self, method: str, error: str, times: int = 1, status: int = 200) -> None:
        """Answer the next ``times`` calls of ``method`` with ``{"ok": false, "error": error}``."""
        with self._lock:
            self._failures[method] = _Failure(error, times, status=status)

    def response_url(self) -> str:
        """A new ``response_url`` target (what Slack puts in a slash command or interaction payload)."""
        with self._lock:
            response_id = f"{next(self._sequence):06d}"
            self._responses[response_id] = _ResponseTarget()
        return f"{self.base_url}/response/{response_id}"

    # ------------------------------------------------------------------ queries

    def calls(self, method: str | None = None) -> list[SlackCall]:
        """Every call received (of ``method``, if given), in order."""
        with self._lock:
            return [call for call in self._calls if method is None or call.method == method]

    def messages_in(self, channel: str) -> list[dict[str, Any]]:
        """The messages now in ``channel`` (as updated by ``chat.update``), oldest first."""
        with self._lock:
            return [dict(message) for message in self._messages.get(channel, [])]

    def dm_channel(self, user_id: str) -> str:
        """The id of the bot's DM with ``user_id`` (what ``conversations.open`` answers)."""
        return "D" + user_id[1:] if user_id[:1] in ("U", "W") else "D" + user_id

    def dm_messages(self, user_id: str) -> list[dict[str, Any]]:
        return self.messages_in(self.dm_channel(user_id))

    def ephemeral_messages(self, user_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self._ephemeral if user_id is None or m["user"] == user_id]

    def responses(self, url: str | None = None) -> list[dict[str, Any]]:
        """The bodies posted to one ``response_url`` (or to all of them), in order."""
        with self._lock:
            if url is None:
                return [body for target in self._responses.values() for body in target.bodies]
            target = self._responses.get(url.rstrip("/").rsplit("/", 1)[-1])
            return list(target.bodies) if target else []

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
        """Poll ``predicate`` until it returns something truthy, and return that (a wait, not a timing check)."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the fake Slack did not see what was awaited within {timeout} s")
            time.sleep(interval)

    # ------------------------------------------------------------------ the Web API (called by the handler)

    def _record(self, method: str, args: dict[str, Any], headers: dict[str, str]) -> None:
        with self._lock:
            self._calls.append(SlackCall(method, args, headers))

    def _take_failure(self, method: str) -> _Failure | None:
        with self._lock:
            failure = self._failures.get(method)
            if failure is None:
                return None
            failure.times -= 1
            if failure.times <= 0:
                del self._failures[method]
            return failure

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._sequence):06d}"

    def _api(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "conversations.open": self._conversations_open,
            "users.info": self._users_info,
            "auth.test": self._auth_test,
        }
        handler = handlers.get(method)
        if handler is None:
            return _refusal("unknown_method")
        return handler(args)

    def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel") or "")
        if not channel:
            return _refusal("channel_not_found")
        if not (args.get("text") or args.get("blocks")):
            return _refusal("no_text")
        if channel[:1] in ("U", "W"):  # a user id: the message goes to the bot's DM with them
            channel = self.dm_channel(channel)
        message = {
            "type": "message",
            "channel": channel,
            "ts": self._next_ts(),
            "text": args.get("text", ""),
            "blocks": _blocks(args.get("blocks")),
            "bot_id": "B0LOCAL01",
        }
        with self._lock:
            self._messages.setdefault(channel, []).append(message)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": dict(message)}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel") or ""), str(args.get("ts") or "")
        with self._lock:
            for message in self._messages.get(channel, []):
                if message["ts"] == ts:
                    message["text"] = args.get("text", message["text"])
                    if "blocks" in args:
                        message["blocks"] = _blocks(args["blocks"])
                    message["edited"] = {"user": "U0LOCALBOT", "ts": self._next_ts()}
                    return {"ok": True, "channel": channel, "ts": ts, "text": message["text"]}
        return _refusal("message_not_found")

    def _post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, user = str(args.get("channel") or ""), str(args.get("user") or "")
        if not channel:
            return _refusal("channel_not_found")
        with self._lock:
            if user not in self._users:
                return _refusal("user_not_in_channel")
            ts = self._next_ts()
            self._ephemeral.append(
                {
                    "channel": channel,
                    "user": user,
                    "ts": ts,
                    "text": args.get("text", ""),
                    "blocks": _blocks(args.get("blocks")),
                }
            )
        return {"ok": True, "message_ts": ts}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = args.get("users") or ""
        ids = [user.strip() for user in (users if isinstance(users, list) else str(users).split(",")) if user.strip()]
        if not ids:
            return _refusal("users_list_not_supplied")
        if len(ids) > 1:
            return _refusal("method_not_supported_for_channel_type")  # group DMs: not needed here
        with self._lock:
            user = self._users.get(ids[0])
        if user is None:
            return _refusal("user_not_found")
        if user["deleted"]:
            return _refusal("user_disabled")
        return {"ok": True, "no_op": True, "already_open": True, "channel": {"id": self.dm_channel(ids[0])}}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            user = self._users.get(str(args.get("user") or ""))
            return {"ok": True, "user": json.loads(json.dumps(user))} if user else _refusal("user_not_found")

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "team_id": self.team_id, "user_id": "U0LOCALBOT", "bot_id": "B0LOCAL01"}

    def _respond(self, response_id: str, body: dict[str, Any]) -> tuple[int, str]:
        with self._lock:
            target = self._responses.get(response_id)
            if target is None:
                return 404, "expired_url"
            if target.uses >= RESPONSE_URL_USES:
                return 404, "used_url"
            target.uses += 1
            target.bodies.append(body)
        return 200, "ok"


def _refusal(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error}


def _blocks(value: Any) -> list[dict[str, Any]]:
    """Blocks arrive as a list (JSON bodies) or as a JSON string (form bodies)."""
    if value is None or value == "":
        return []
    parsed = json.loads(value) if isinstance(value, str) else value
    return list(parsed) if isinstance(parsed, list) else []


def _handler_for(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    return type("FakeSlackHandler", (_Handler,), {"fake": fake})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeSlack  # set per server by _handler_for

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("fake slack: " + format, *args)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        path = urlsplit(self.path)
        try:
            args = self._arguments(path.query)
        except (ValueError, UnicodeDecodeError):
            self._json(200, _refusal("invalid_form_data"))
            return
        if path.path.startswith("/response/"):
            self._serve_response(path.path.removeprefix("/response/").strip("/"), args)
        elif path.path.startswith("/api/"):
            self._serve_api(path.path.removeprefix("/api/"), args)
        else:
            self._send(404, b"not found", "text/plain")

    def _serve_response(self, response_id: str, args: dict[str, Any]) -> None:
        self.fake._record("response_url", args, dict(self.headers.items()))
        status, text = self.fake._respond(response_id, args)
        self._send(status, text.encode(), "text/html")

    def _serve_api(self, method: str, args: dict[str, Any]) -> None:
        token = self._token(args)
        args.pop("token", None)
        self.fake._record(method, args, dict(self.headers.items()))
        if token is None:
            self._json(200, _refusal("not_authed"))
            return
        if token != self.fake.token:
            self._json(200, _refusal("invalid_auth"))
            return
        failure = self.fake._take_failure(method)
        if failure is not None:
            extra = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
            self._json(failure.status, _refusal(failure.error), extra)
            return
        self._json(200, self.fake._api(method, args))

    def _arguments(self, query: str) -> dict[str, Any]:
        args: dict[str, Any] = dict(parse_qsl(query))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if raw and content_type == "application/json":
            body = json.loads(raw.decode())
            if not isinstance(body, dict):
                raise ValueError("a JSON body must be an object")
            args.update(body)
        elif raw:
            args.update(parse_qsl(raw.decode(), keep_blank_values=True))
        return args

    def _token(self, args: dict[str, Any]) -> str | None:
        authorization = self.headers.get("Authorization") or ""
        if authorization.startswith("Bearer "):
            return authorization.removeprefix("Bearer ").strip()
        token = args.get("token")
        return str(token) if token else None

    def _json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body).encode(), "application/json; charset=utf-8", headers)

    def _send(self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
