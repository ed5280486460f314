"""A fault-injecting HTTP proxy between pay_api and Stripe (localstripe).

It really drops, delays or cuts the bytes: pay_api's Stripe SDK sees a reset connection, a timeout or
a 500 exactly as it would on a bad network. Rules match a request by method and path pattern and
fire a given number of times; everything else passes through untouched.

    proxy = FaultProxy(upstream_port=8420).start()     # listens on proxy.port
    proxy.add(Rule("POST", r"/v1/payment_intents/\\w+/confirm", Fault.RESET_AFTER_UPSTREAM, times=1))

Faults:
  RESET_BEFORE_UPSTREAM  the request never reaches Stripe; the client sees a reset connection
  RESET_AFTER_UPSTREAM   Stripe does it; the answer is lost (a reset instead of the response)
  DELAY                  Stripe does it after `delay` seconds (the client may time out first)
  HTTP_500               Stripe is not asked; the client gets a 500 with a Stripe-shaped error
  HOLD                   the request waits until the test calls `rule.release()` (at most
                         `delay` seconds), then goes on: a test orders other work inside it

The proxy speaks plain HTTP/1.1 to any upstream: the renewal fault tests also put one between
billing's workers and pay_api (`seen` shows what they asked, a rule loses pay_api's answer).
"""

from __future__ import annotations

import asyncio
import enum
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field


class Fault(enum.Enum):
    RESET_BEFORE_UPSTREAM = "reset_before_upstream"
    RESET_AFTER_UPSTREAM = "reset_after_upstream"
    DELAY = "delay"
    HTTP_500 = "http_500"
    HOLD = "hold"


@dataclass
class Rule:
    method: str
    path_pattern: str
    fault: Fault
    times: int = 1
    delay: float = 0.0
    # Only requests whose body holds this text (say, one payment's id in a batch of renewals).
    body_contains: str = ""
    fired: int = 0
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        """Let the requests a HOLD rule keeps go on (and every later one it matches)."""
        self.released.set()

    def matches(self, method: str, path: str, body: bytes = b"") -> bool:
        return (
            self.fired < self.times
            and method == self.method
            and re.fullmatch(self.path_pattern, path.split("?")[0]) is not None
            and self.body_contains.encode() in body
        )


@dataclass
class FaultProxy:
    upstream_port: int
    upstream_host: str = "127.0.0.1"
    port: int = 0
    rules: list[Rule] = field(default_factory=list)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, what happened)
    bodies: list[bytes] = field(default_factory=list)  # each seen request's body

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()

    # --- control -----------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        threading.Thread(target=self._run, name="fault-proxy", daemon=True).start()
        self._ready.wait(5)
        return self

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            for rule in self.rules:
                rule.release()
            self.rules.clear()
            self.seen.clear()
            self.bodies.clear()

    def requests(
        self, method: str, path_pattern: str, body_contains: str = ""
    ) -> list[tuple[str, str, str]]:
        """What reached the proxy so far that matches (method, path pattern, a text its body
        holds)."""
        with self._lock:
            seen = list(zip(self.seen, self.bodies, strict=True))
        return [
            entry
            for entry, body in seen
            if entry[0] == method
            and re.fullmatch(path_pattern, entry[1].split("?")[0])
            and body_contains.encode() in body
        ]

    def wait_for(
        self,
        method: str,
        path_pattern: str,
        count: int = 1,
        timeout: float = 30,
        body_contains: str = "",
    ) -> list[tuple[str, str, str]]:
        """Wait until `count` matching requests reached the proxy; them (fewer after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.requests(method, path_pattern, body_contains)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- the proxy ---------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def _take_rule(self, method: str, path: str, body: bytes) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path, body):
                    rule.fired += 1
                    return rule
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                method, path, raw, body = request
                rule = self._take_rule(method, path, body)
                fault = rule.fault if rule else None
                with self._lock:
                    self.seen.append((method, path, fault.value if fault else "passed"))
                    self.bodies.append(body)
                if fault is Fault.RESET_BEFORE_UPSTREAM:
                    _reset(writer)
                    return
                if fault is Fault.HTTP_500:
                    body = b'{"error": {"type": "api_error", "message": "injected fault"}}'
                    writer.write(
                        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
                    )
                    await writer.drain()
                    writer.close()
                    return
                if fault is Fault.DELAY:
                    await asyncio.sleep(rule.delay)
                if fault is Fault.HOLD:
                    await asyncio.to_thread(rule.released.wait, rule.delay)
                response = await self._upstream(raw)
                if fault is Fault.RESET_AFTER_UPSTREAM:
                    _reset(writer)
                    return
                writer.write(response)
                await writer.drain()
                writer.close()
                return
        except (ConnectionError, asyncio.IncompleteReadError):
            writer.close()

    async def _upstream(self, raw: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        writer.write(raw)
        await writer.drain()
        response = await reader.read()  # the request asked Connection: close
        writer.close()
        return response


async def _read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, str, bytes, bytes] | None:
    """One HTTP/1.1 request, rewritten to `Connection: close` so the upstream answer ends at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = [line for line in lines[1:] if line]
    length = 0
    kept = []
    for header in headers:
        name, _, value = header.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        if name.strip().lower() not in ("connection", "keep-alive"):
            kept.append(header)
    body = await reader.readexactly(length) if length else b""
    raw = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1") + body
    return method, path, raw, body


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a dropped connection looks to the client."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
