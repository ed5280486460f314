"""A minimal pipelined Redis (RESP2) client for the access check's single read (MGET).

Why not redis-py here: its asyncio client spends ~100-200 µs of Python per command (pool checkout,
retry wrapper, encoders) — more than the rest of a cached access check together (measured). This
client keeps ONE connection per process and pipelines every concurrent request on it: write the
command, queue a future, and resolve futures in order as replies arrive (Redis answers in order).
Everything else (writes, invalidation, the worker) still uses redis-py.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any
from urllib.parse import unquote, urlparse

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class _Incomplete(Exception):
    """The buffer does not hold a whole reply yet."""


def encode_command(*parts: bytes | str) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def parse_reply(buffer: bytearray, pos: int) -> tuple[Any, int]:
    """One RESP2 reply starting at `pos` → (value, position after it); `_Incomplete` if cut."""
    end = buffer.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete()
    kind, line = buffer[pos : pos + 1], bytes(buffer[pos + 1 : end])
    pos = end + 2
    if kind == b"$":
        length = int(line)
        if length < 0:
            return None, pos
        if len(buffer) < pos + length + 2:
            raise _Incomplete()
        return bytes(buffer[pos : pos + length]), pos + length + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, pos
        items = []
        for _ in range(count):
            item, pos = parse_reply(buffer, pos)
            items.append(item)
        return items, pos
    if kind == b"+":
        return line, pos
    if kind == b":":
        return int(line), pos
    if kind == b"-":
        return ResponseError(line.decode(errors="replace")), pos
    raise RedisConnectionError(f"unexpected reply from Redis: {kind!r}")


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiters: deque[asyncio.Future] = deque()
        self.pending: list[bytes] = []
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def request(self, payload: bytes) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiters.append(future)
        # Commands issued in the same loop iteration leave in one write (one syscall).
        if not self.pending:
            loop.call_soon(self._flush)
        self.pending.append(payload)
        return future

    def _flush(self) -> None:
        payload, self.pending = b"".join(self.pending), []
        if self.transport is not None and not self.lost:
            self.transport.write(payload)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        pos = 0
        try:
            while self.waiters:
                value, pos = parse_reply(self.buffer, pos)
                future = self.waiters.popleft()
                if not future.done():  # its caller may have been cancelled
                    if isinstance(value, Exception):
                        future.set_exception(value)
                    else:
                        future.set_result(value)
        except _Incomplete:
            pass
        except Exception as exc:  # a protocol error: nothing after it can be trusted
            self.transport.close()
            self.connection_lost(exc)
        del self.buffer[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self.waiters:
            future = self.waiters.popleft()
            if not future.done():
                future.set_exception(RedisConnectionError(f"Redis connection lost: {exc!r}"))


class PipelinedRedis:
    """`mget` over one pipelined connection; reconnects on the next call after a failure."""

    def __init__(self, url: str, timeout: float = 1.0) -> None:
        # A stalled Redis must not stall access checks: past `timeout` the call fails (and the
        # caller answers from the database) and the connection is dropped.
        self._timeout = timeout
        parsed = urlparse(url)
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or 6379
        self._db = int(parsed.path.lstrip("/") or 0)
        self._username = unquote(parsed.username) if parsed.username else None
        self._password = unquote(parsed.password) if parsed.password else None
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None and not self._protocol.lost:
                return self._protocol
            try:
                _, protocol = await asyncio.get_running_loop().create_connection(
                    _Protocol, self._host, self._port
                )
            except OSError as exc:
                raise RedisConnectionError(f"cannot reach Redis: {exc}") from exc
            if self._password:
                auth = [self._username, self._password] if self._username else [self._password]
                await protocol.request(encode_command("AUTH", *auth))
            if self._db:
                await protocol.request(encode_command("SELECT", str(self._db)))
            self._protocol = protocol
            return protocol

    async def mget(self, *keys: str) -> list[bytes | None]:
        try:
            return await asyncio.wait_for(self._mget(keys), self._timeout)
        except TimeoutError as exc:
            self.close()
            raise RedisTimeoutError(f"Redis did not answer within {self._timeout} s") from exc

    async def _mget(self, keys: tuple[str, ...]) -> list[bytes | None]:
        protocol = self._protocol
        if protocol is None or protocol.lost:
            protocol = await self._connect()
        return await protocol.request(encode_command("MGET", *keys))

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
