"""The HTTP layer under the gateway: `Urllib3Client`, a `stripe.HTTPClient` on urllib3, and
`DirectPosts`, the hottest requests sent on it without the SDK's object layer (with `gateway.py`,
the only modules that import `stripe`; the gateway is the only one that uses them).

Both are cheaper per request than what they replace (bench/README.md, "The Stripe HTTP client"),
with the same requests, errors, timeouts and retries.
"""

from __future__ import annotations

import json
import textwrap
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

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


def form_encoded(params: Mapping[str, Any]) -> str:
    """`params` as the SDK's form body for the v1 API (`stripe._encode._api_encode`, then its
    brackets unquoted): `None` left out, `True` as `true`, a dict as `key[sub]`, a list as
    `key[0]`, `key[1]`…; everything else as its text."""
    pairs: list[tuple[str, str]] = []

    def add(key: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, Mapping):
            for sub, item in value.items():
                add(f"{key}[{sub}]", item)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                add(f"{key}[{index}]", item)
        elif isinstance(value, bool):
            pairs.append((key, "true" if value else "false"))
        else:
            pairs.append((key, str(value)))

    for key, value in params.items():
        add(key, value)
    return urlencode(pairs).replace("%5B", "[").replace("%5D", "]")


class DirectPosts:
    """POSTs to Stripe's v1 API for pay_api's hottest calls (a renewal's PaymentIntent create and
    confirm), sent by the SDK's HTTP client with its retries but without the SDK's object layer.

    Per request the SDK built its headers anew (the client user-agent's JSON, the Python version),
    merged its options, formatted log lines it did not write and turned the answer into
    `StripeObject`s: about as much CPU as the HTTP exchange under it (bench/README.md, "The Stripe
    HTTP client": "Without the SDK's object layer"). Here the headers are built once, the body is
    `form_encoded`, and a 2xx answer's JSON is handed back as a dict. The contract is the SDK's:

    * the same request: method, URL, body and headers (Authorization, Stripe-Version,
      Idempotency-Key, User-Agent …; tests compare them on the wire);
    * the same retries (`HTTPClient.request_with_retries`: network failures, 409, 429 and 5xx as
      Stripe-Should-Retry says, the same Idempotency-Key each time), raising `APIConnectionError`;
    * every other answer read by the SDK itself (`_interpret_response`), which raises its
      `CardError`, `InvalidRequestError`, `APIError` … exactly as a call through the SDK would.
    """

    def __init__(self, client: stripe.StripeClient, *, base_url: str, max_network_retries: int):
        requestor = client._requestor
        self._requestor = requestor
        self._http: stripe.HTTPClient = requestor._get_http_client()
        self._base_url = base_url.rstrip("/")
        self._retries = max_network_retries
        options = requestor._options
        # The SDK's own headers for a POST (its `request_headers`), made once; the key per call.
        self._headers = {
            name: value
            for name, value in requestor.request_headers(
                "post",
                "V1",
                {"api_key": options.api_key, "stripe_version": options.stripe_version},
            ).items()
            if name != "Idempotency-Key"
        }

    def post(self, path: str, params: Mapping[str, Any], *, idempotency_key: str) -> dict:
        """POST `params` to `path` (`/v1/...`); the answer's JSON, or the SDK's error raised."""
        body, status, headers = self._http.request_with_retries(
            "post",
            self._base_url + path,
            {**self._headers, "Idempotency-Key": idempotency_key},
            form_encoded(params),
            max_network_retries=self._retries,
        )
        if 200 <= status < 300:
            try:
                return json.loads(body)
            except ValueError:
                pass  # the SDK's reading raises its APIError for it
        return self._requestor._interpret_response(body, status, headers, "V1").data
