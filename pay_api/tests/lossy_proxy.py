"""A small TCP proxy between pay_api and localstripe that really loses Stripe's answers.

Each request is read, forwarded upstream with `Connection: close`, and its answer relayed back —
unless a rule matches (method and path pattern, a number of times): then the connection is reset
(TCP RST) either after the request reached localstripe (`after_upstream=True`: Stripe did it, the
answer is lost) or before (the request never arrived). pay_api's Stripe SDK sees exactly what it
would see on a bad network. The idea of integration_tests/faults/proxy.py, threads instead of
asyncio, so a service test needs nothing from the integration suite.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
from dataclasses import dataclass


@dataclass
class Loss:
    method: str
    path_pattern: str
    after_upstream: bool
    times: int
    fired: int = 0


class LossyProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.losses: list[Loss] = []
        self.seen: list[tuple[str, str, str]] = []  # (method, path, what happened)
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._running = True
        threading.Thread(target=self._accept, name="lossy-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lose(
        self, method: str, path_pattern: str, *, after_upstream: bool = True, times: int = 1
    ) -> Loss:
        loss = Loss(method, path_pattern, after_upstream, times)
        with self._lock:
            self.losses.append(loss)
        return loss

    def clear(self) -> None:
        """Lose nothing more."""
        with self._lock:
            self.losses.clear()

    def reset(self) -> None:
        """Lose nothing more, and forget what was seen."""
        with self._lock:
            self.losses.clear()
            self.seen.clear()

    def forwarded(self, method: str, path_pattern: str) -> int:
        """How many matching requests reached localstripe."""
        with self._lock:
            return sum(
                1
                for m, path, what in self.seen
                if m == method
                and re.fullmatch(path_pattern, path)
                and what in ("passed", "answer_lost")
            )

    def close(self) -> None:
        self._running = False
        self._server.close()

    # --- the proxy ----------------------------------------------------------------------------

    def _accept(self) -> None:
        while self._running:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _take(self, method: str, path: str) -> Loss | None:
        with self._lock:
            for loss in self.losses:
                if (
                    loss.fired < loss.times
                    and loss.method == method
                    and re.fullmatch(loss.path_pattern, path)
                ):
                    loss.fired += 1
                    return loss
        return None

    def _serve(self, conn: socket.socket) -> None:
        try:
            request = _read_request(conn)
            if request is None:
                conn.close()
                return
            method, path, raw = request
            loss = self._take(method, path)
            if loss is not None and not loss.after_upstream:
                self._record(method, path, "lost_before")
                _reset(conn)
                return
            with socket.create_connection(self.upstream, timeout=30) as upstream:
                upstream.sendall(raw)
                response = _read_all(upstream)
            if loss is not None:
                self._record(method, path, "answer_lost")
                _reset(conn)
                return
            self._record(method, path, "passed")
            conn.sendall(response)
            conn.close()
        except OSError:
            conn.close()

    def _record(self, method: str, path: str, what: str) -> None:
        with self._lock:
            self.seen.append((method, path, what))


def _read_request(conn: socket.socket) -> tuple[str, str, bytes] | None:
    """One HTTP/1.1 request, rewritten to `Connection: close` so the answer ends at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    kept, length = [], 0
    for header in lines[1:]:
        name, _, value = header.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        if name.strip().lower() not in ("connection", "keep-alive"):
            kept.append(header)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    raw = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1") + body
    return method, target.split("?")[0], raw


def _read_all(sock: socket.socket) -> bytes:
    parts = []
    while chunk := sock.recv(65536):
        parts.append(chunk)
    return b"".join(parts)


def _reset(conn: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a dropped connection looks to the client."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
