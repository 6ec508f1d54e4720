"""Chat-ops messaging: what accessctl says in Slack (and Teams), and the clients that say it.

- :mod:`accessctl.chat.blocks`: the messages themselves (Block Kit), pure functions of the records;
- :mod:`accessctl.chat.slack`: a thin Slack Web API client that maps Slack's errors onto ours.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from accessctl.errors import ChatError

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def require_webhook_url(url: str) -> str:
    """A URL accessctl may POST a message to: https, or plain http to loopback (local stack, tests)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return url
    # The URL may carry a token in its path: name only the scheme and host.
    raise ChatError(f"refusing to post to {parts.scheme or 'no scheme'}://{parts.hostname or ''}: https is required")
