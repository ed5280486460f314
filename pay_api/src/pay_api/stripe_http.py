"""The HTTP client under stripe-python: `Urllib3Client`, a `stripe.HTTPClient` on urllib3 (with
`gateway.py`, the only modules that import `stripe`; the gateway is the only one that uses it).

Cheaper than stripe's `RequestsClient` per request (bench/README.md, "The Stripe HTTP client"),
with the same errors, timeouts and retries as seen from the SDK.
"""

from __future__ import annotations

import textwrap
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import stripe
import urllib3
from urllib3.exceptions import (
    ClosedPoolError,
    MaxRetryError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for `url`, read when called: `HTTPS_PROXY` for an https URL
    (`HTTP_PROXY` for http), else `ALL_PROXY` (the lower-case names first), as requests chose it —
    unless `NO_PROXY` covers the host: `*`, the host or a domain it is in (stdlib's reading;
    requests also took IP ranges and any trailing part of the name)."""
    proxies = urllib.request.getproxies_environment()
    parts = urlsplit(url)
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass_environment(parts.netloc, proxies):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _pool_manager(proxy: str | None, **pool_options: Any) -> urllib3.PoolManager:
    if proxy is None:
        return urllib3.PoolManager(**pool_options)
    parts = urlsplit(proxy)
    headers = None
    if parts.username:  # as requests sent it: Proxy-Authorization from the proxy URL's user
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers = urllib3.make_headers(proxy_basic_auth=credentials)
    address = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return urllib3.ProxyManager(address, proxy_headers=headers, **pool_options)


_NETWORK_ERROR = (
    "Unexpected error communicating with Stripe.  If this problem persists, let us know at "
    "support@stripe.com."
)
_TLS_ERROR = (
    "Could not verify Stripe's SSL certificate.  Please make sure that your network is not "
    "intercepting certificates.  If this problem persists, let us know at support@stripe.com."
)
_LOCAL_ERROR = (
    "Unexpected error communicating with Stripe. It looks like there's probably a configuration "
    "issue locally.  If this problem persists, let us know at support@stripe.com."
)


def _connection_error(exc: Exception, *, reading_body: bool) -> stripe.APIConnectionError:
    """The SDK's error for a request that failed in urllib3, retried (`should_retry`) exactly when
    stripe's RequestsClient retried the same failure — requests' mapping of urllib3's errors
    (`HTTPAdapter.send`, `Response.content`) followed by RequestsClient's of requests'.

    `reading_body`: the status line and headers had arrived, the body was being read.
    """
    if isinstance(exc, MaxRetryError) and exc.reason is not None:  # not with retries=False
        exc = exc.reason
    if isinstance(exc, SSLError):  # requests' SSLError, wherever it happened
        message, should_retry = _TLS_ERROR, False
    elif reading_body:
        # requests' Response.content: a read timeout is a ConnectionError (retried); a connection
        # broken mid-body (ChunkedEncodingError) or a body it cannot decode is not.
        should_retry = isinstance(exc, ReadTimeoutError)
        message = _NETWORK_ERROR if isinstance(exc, urllib3.exceptions.HTTPError) else _LOCAL_ERROR
    elif isinstance(
        exc, (urllib3.exceptions.TimeoutError, ProtocolError, ProxyError, ClosedPoolError, OSError)
    ):
        # requests' Timeout or ConnectionError: connect timeout, refused, name not resolved, read
        # timeout of a request already sent, connection reset or closed, the proxy's failure.
        message, should_retry = _NETWORK_ERROR, True
    elif isinstance(exc, urllib3.exceptions.HTTPError):  # an invalid header or URL...
        message, should_retry = _NETWORK_ERROR, False
    else:
        message, should_retry = _LOCAL_ERROR, False
    detail = f"{type(exc).__name__}: {exc}"
    return stripe.APIConnectionError(
        textwrap.fill(message) + f"\n\n(Network error: {detail})", should_retry=should_retry
    )


class Urllib3Client(stripe.HTTPClient):
    """stripe-python's HTTP client over urllib3's connection pools, in place of stripe's
    `RequestsClient`, whose requests spent on each request about as much CPU again as urllib3
    under it, on what pay_api does not need (re-reading the proxy variables from the environment,
    merging session settings, cookies, hooks): bench/README.md, "The Stripe HTTP client". It keeps
    that client's contract:

    * keep-alive connections, `pool_size` kept per host, shared by every thread (urllib3's pools
      are thread-safe; more requests at once than that open connections closed after use);
    * the same timeouts (connect, read: a socket silent that long), TLS verified against stripe's
      CA bundle (`stripe.ca_bundle_path`), no retries of its own: the SDK retries
      (`max_network_retries`, the same Idempotency-Key each time);
    * failures raised as the SDK's `APIConnectionError`, retried exactly as before
      (`_connection_error`);
    * the proxy of the environment (`environment_proxy`) — but read once, for `base_url`'s host,
      when the client is built, and used for every request.

    Unlike requests it neither asks for compressed answers (Stripe's JSON is a few KB) nor follows
    redirects (Stripe's API sends none; one would reach the SDK as an error).
    """

    name = "urllib3"

    def __init__(
        self, *, base_url: str, connect_timeout: float, read_timeout: float, pool_size: int
    ) -> None:
        super().__init__()
        self.proxy = environment_proxy(base_url)
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._pools = _pool_manager(
            self.proxy,
            maxsize=pool_size,
            block=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=stripe.ca_bundle_path,
        )

    def request(
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        response = self._send(method, url, headers, post_data)
        try:
            content = response.read()
        except Exception as exc:
            raise _connection_error(exc, reading_body=True) from exc
        return content, response.status, response.headers

    def request_stream(
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None
    ) -> tuple[Any, int, Mapping[str, str]]:
        """The SDK's streamed answers (quote PDFs; pay_api asks for none): the open response."""
        response = self._send(method, url, headers, post_data)
        return response, response.status, response.headers

    def close(self) -> None:
        self._pools.clear()

    def _send(
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any
    ) -> urllib3.BaseHTTPResponse:
        body = post_data.encode() if isinstance(post_data, str) else post_data
        try:
            return self._pools.urlopen(
                method.upper(),  # the SDK says "post"
                url,
                body=body,
                headers=headers,
                timeout=self._timeout,
                retries=False,
                redirect=False,
                preload_content=False,
            )
        except Exception as exc:
            raise _connection_error(exc, reading_body=False) from exc
