"""A real TCP server on 127.0.0.1 that misbehaves on purpose, for the tests of the Stripe HTTP client.

It reads each HTTP/1.1 request (request line, headers, a Content-Length body), records it, and
does the next of its `acts` with it (the last one repeats):

    Answer(status, body)   a complete answer (`raw`: bytes sent as the body instead of JSON); the connection stays open for the next request
    SILENCE                never answers (the connection stays open until the server closes)
    HANG_UP                closes the connection without a word
    HEADERS_ONLY           the status line and headers, then silence (the body never comes)
    CUT_BODY               the status line, headers and part of the body, then closes

`connections` counts the connections accepted, `requests` what arrived (method, target, headers
with lower-case names, body). With `tls`, an `ssl.SSLContext`, it speaks HTTPS.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict = field(default_factory=dict)
    raw: bytes | None = None


SILENCE, HANG_UP, HEADERS_ONLY, CUT_BODY = "silence", "hang up", "headers only", "cut body"


@dataclass(frozen=True)
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes = b""


class RawServer:
    def __init__(self, *acts, tls: ssl.SSLContext | None = None) -> None:
        self.acts = list(acts)
        self.tls = tls
        self.connections = 0
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, name="raw-server", daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._sockets.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _next_act(self, received: Received):
        with self._lock:
            self.requests.append(received)
            return self.acts.pop(0) if len(self.acts) > 1 else self.acts[0]

    def _serve(self, sock: socket.socket) -> None:
        try:
            if self.tls:
                sock = self.tls.wrap_socket(sock, server_side=True)
            reader = sock.makefile("rb")
            while True:
                line = reader.readline()
                if not line:
                    return
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers = {}
                while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = reader.read(int(headers.get("content-length", 0)))
                act = self._next_act(Received(method, target, headers, body))
                if act == SILENCE:
                    self._closed.wait()
                    return
                if act == HANG_UP:
                    return
                if act in (HEADERS_ONLY, CUT_BODY):
                    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    sock.sendall(head + b"Content-Length: 100\r\n\r\n")
                    if act == CUT_BODY:
                        sock.sendall(b'{"id": "pi')
                        return
                    self._closed.wait()
                    return
                payload = json.dumps(act.body).encode() if act.raw is None else act.raw
                sock.sendall(
                    b"HTTP/1.1 %d Answer\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nRequest-Id: req_raw\r\n\r\n%s"
                    % (act.status, len(payload), payload)
                )
        except (OSError, ValueError):  # the client went away, or the test is over
            return
        finally:
            sock.close()
