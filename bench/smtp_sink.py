"""The benchmarks' mail relay: an SMTP server that accepts every message and keeps none.

It stands where a real relay would be, outside the system measured, like `fake_stripe.py` stands
for Stripe; so it should cost as little CPU as it can. aiosmtpd (the stack's own mail server,
scripts/mail_server.py, which keeps every message for `make mail` and the tests) parses each
command and each message into an envelope; at a few hundred renewals a second its CPU was about
a fifth of a core of the benchmark's two. This one only tells commands from message text:

* any command is answered `250` (EHLO with one line: no extensions), `DATA` with `354`,
  `QUIT` with `221` and the connection closed;
* after `DATA`, bytes are skipped up to the line holding a single dot, then `250`.

Usage: python bench/smtp_sink.py PORT
"""

from __future__ import annotations

import argparse
import asyncio
import signal

END_OF_DATA = b"\r\n.\r\n"


class Sink(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""
        self.in_data = False
        transport.write(b"220 sink ready\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        replies: list[bytes] = []
        while True:
            if self.in_data:
                end = self.buffer.find(END_OF_DATA)
                if end < 0:
                    # Keep the last 4 bytes: the end mark may be split between reads.
                    self.buffer = self.buffer[-4:]
                    break
                self.buffer = self.buffer[end + len(END_OF_DATA) :]
                self.in_data = False
                replies.append(b"250 OK\r\n")
                continue
            line, found, rest = self.buffer.partition(b"\r\n")
            if not found:
                break
            self.buffer = rest
            verb = line[:4].upper()
            if verb == b"DATA":
                self.in_data = True
                # The DATA line's own CRLF starts the text: a message may be empty (the dot
                # right after DATA).
                self.buffer = b"\r\n" + self.buffer
                replies.append(b"354 end with <CRLF>.<CRLF>\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"".join(replies) + b"221 bye\r\n")
                self.transport.close()
                return
            else:
                replies.append(b"250 sink\r\n" if verb in (b"EHLO", b"HELO") else b"250 OK\r\n")
        if replies:
            self.transport.write(b"".join(replies))


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(Sink, "127.0.0.1", port)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
