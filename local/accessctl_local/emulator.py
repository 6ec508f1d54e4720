"""The embedded AWS: moto's ``ThreadedMotoServer`` on 127.0.0.1, configured to execute state machines.

Configuration goes through moto's public ``/moto-api/config`` endpoint. Step Functions' executor
calls Lambda back at ``http://localhost:$MOTO_PORT``, so ``MOTO_PORT`` must name this server's port
(set by ``LocalStack``, which owns the process environment).
"""

from __future__ import annotations

import json
import logging
import socket
import urllib.request
from typing import Any

from moto.server import ThreadedMotoServer

HOST = "127.0.0.1"
EMULATOR_CONFIG: dict[str, Any] = {"stepfunctions": {"execute_state_machine": True}}


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class Emulator:
    """Start/stop the moto server and talk to its control API."""

    def __init__(self, port: int = 0) -> None:
        # moto needs the port before it starts (clients in its executor use it), so pick it now.
        self.port = port or free_port()
        self._server = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)
        self._running = False

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        # werkzeug logs every request at INFO; the API call counter is the useful view of that.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        self._running = True
        self.control("config", EMULATOR_CONFIG)

    def stop(self) -> None:
        if self._running:
            self._running = False
            self._server.stop()

    def reset(self) -> None:
        """Forget every resource (all services, all accounts)."""
        self.control("reset", {})

    def control(self, endpoint: str, payload: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/{endpoint}",
            data=json.dumps(payload).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode() or "null"
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
