"""The ceiling of the access benchmark: a raw ASGI app that answers a constant Access JSON.

Run under the same uvicorn flags as billing, it measures what the server itself can do on this
machine; the access check is judged as a fraction of it (bench/access_check.py).
"""

from __future__ import annotations

BODY = (
    b'{"allowed":true,"reason":"subscription","until":"2030-01-01T00:00:00+00:00",'
    b'"film_id":"11111111-1111-4111-8111-111111111111",'
    b'"user_id":"6f1c8a52-8f0e-4a55-9d1b-4b0d2f7f7c11"}'
)
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
