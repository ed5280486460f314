"""The HTTP client under the Stripe SDK (`stripe_http.Urllib3Client`) against real sockets that misbehave
(`raw_server.py`): what reaches Stripe, what the SDK retries, what pay_api answers — the same as
with stripe's `RequestsClient`, which it replaced (each failure is run with both)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import stripe
from pay_api.errors import GatewayUnavailable
from pay_api.gateway import CONNECT_TIMEOUT_SECONDS, Gateway
from pay_api.stripe_http import environment_proxy

from .conftest import free_port, make_settings
from .raw_server import CUT_BODY, HANG_UP, HEADERS_ONLY, SILENCE, Answer

READ_TIMEOUT = 0.3
INTENT = {
    "id": "pi_raw",
    "object": "payment_intent",
    "amount": 999,
    "currency": "usd",
    "status": "requires_confirmation",
    "customer": "cus_raw",
    "payment_method": "pm_raw",
    "metadata": {"payment_id": "p-1"},
}
SERVER_ERROR = {"error": {"type": "api_error", "message": "Something went wrong."}}


pytestmark = pytest.mark.usefixtures("stripe_wire")


def gateway_for(base: str, client: str = "urllib3") -> Gateway:
    """A gateway speaking to `base` as to Stripe (2 retries, a 0.3 s read timeout), over our client
    or stripe's RequestsClient."""
    settings = make_settings(
        "postgresql+psycopg://unused/unused",
        base,
        "http://billing.invalid",
        STRIPE_LOCALSTRIPE=False,
        STRIPE_PUBLISHABLE_KEY="pk_test_raw",
        PAY_API_STRIPE_TIMEOUT=READ_TIMEOUT,
        PAY_API_STRIPE_MAX_RETRIES=2,
    )
    if client == "requests":
        timeout = (CONNECT_TIMEOUT_SECONDS, settings.stripe_timeout_seconds)
        return Gateway(settings, http_client=stripe.RequestsClient(timeout=timeout))
    return Gateway(settings)


def create_intent(gateway: Gateway):
    return gateway.create_payment_intent(
        payment_id="p-1",
        customer_id="cus_raw",
        payment_method_id="pm_raw",
        amount=999,
        currency="usd",
        description="Premium",
    )


def attempts_of(monkeypatch, gateway: Gateway) -> list[str]:
    """The requests the SDK hands its HTTP client, one per attempt (still sent for real)."""
    attempts: list[str] = []
    send = gateway.http_client.request

    def counted(method, url, headers, post_data=None):
        attempts.append(url)
        return send(method, url, headers, post_data)

    monkeypatch.setattr(gateway.http_client, "request", counted)
    return attempts


def unavailable(gateway: Gateway) -> stripe.APIConnectionError:
    """The create ends in GatewayUnavailable; Stripe's error under it."""
    with pytest.raises(GatewayUnavailable) as raised:
        create_intent(gateway)
    assert isinstance(raised.value.__cause__, stripe.APIConnectionError)
    return raised.value.__cause__


# --- failures: retried (or not) as RequestsClient did -------------------------------------------

CLIENTS = pytest.mark.parametrize("client", ["urllib3", "requests"])


@CLIENTS
def test_a_refused_connection_is_retried_then_unavailable(monkeypatch, client):
    closed_port = free_port()  # nothing listens there: connection refused
    gateway = gateway_for(f"http://127.0.0.1:{closed_port}", client)
    attempts = attempts_of(monkeypatch, gateway)
    error = unavailable(gateway)
    assert error.should_retry
    assert len(attempts) == 3  # the first and the SDK's 2 retries


@CLIENTS
@pytest.mark.parametrize("act", [SILENCE, HEADERS_ONLY, HANG_UP])
def test_an_answer_that_never_comes_is_retried_with_the_same_key(monkeypatch, servers, client, act):
    """The request reached Stripe, the answer did not (a read timeout before the headers or in the
    body, a dropped connection): sent again with the same Idempotency-Key, then unavailable."""
    server = servers(act)
    gateway = gateway_for(server.url, client)
    started = time.monotonic()
    error = unavailable(gateway)
    assert error.should_retry
    assert len(server.requests) == 3
    keys = {r.headers["idempotency-key"] for r in server.requests}
    assert keys == {"pay_api-pi-create-p-1-pm_raw"}
    if act != HANG_UP:  # each attempt waited the read timeout, not the 5 s of the connect one
        assert 3 * READ_TIMEOUT <= time.monotonic() - started < CONNECT_TIMEOUT_SECONDS


@CLIENTS
def test_only_the_sdk_retries(servers, client):
    """A dropped connection on a GET (which urllib3 would retry on its own if let): the SDK's
    2 retries and nothing more reach Stripe."""
    server = servers(HANG_UP)
    with pytest.raises(GatewayUnavailable):
        gateway_for(server.url, client).retrieve_payment_intent("pi_raw")
    assert [r.method for r in server.requests] == ["GET"] * 3


@CLIENTS
def test_a_body_cut_short_is_not_retried(monkeypatch, servers, client):
    """requests' ChunkedEncodingError: RequestsClient did not retry it, neither do we."""
    server = servers(CUT_BODY)
    gateway = gateway_for(server.url, client)
    error = unavailable(gateway)
    assert not error.should_retry
    assert len(server.requests) == 1


@CLIENTS
def test_a_server_error_is_retried_with_the_same_key(servers, client):
    server = servers(Answer(500, SERVER_ERROR), Answer(200, INTENT))
    state = create_intent(gateway_for(server.url, client))
    assert state.id == "pi_raw"
    assert [r.method for r in server.requests] == ["POST", "POST"]
    assert {r.headers["idempotency-key"] for r in server.requests} == {
        "pay_api-pi-create-p-1-pm_raw"
    }


# --- TLS: verified against stripe's CA bundle ------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[ssl.SSLContext, str]:
    """A server context for 127.0.0.1 with a self-signed certificate, and that certificate's file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stripe stand-in")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context, str(folder / "cert.pem")


@CLIENTS
def test_a_certificate_outside_stripes_bundle_is_refused_and_not_retried(
    servers, certificate, client
):
    server = servers(Answer(200, INTENT), tls=certificate[0])
    error = unavailable(gateway_for(server.url, client))
    assert not error.should_retry
    assert "SSL" in str(error)
    assert server.requests == []


def test_the_ca_bundle_is_stripes(monkeypatch, servers, certificate):
    """`stripe.ca_bundle_path` (read when the client is built) is what the certificate is checked
    against: pointed at the stand-in's own certificate, the request goes through."""
    monkeypatch.setattr(stripe, "ca_bundle_path", certificate[1])
    server = servers(Answer(200, INTENT), tls=certificate[0])
    assert create_intent(gateway_for(server.url)).id == "pi_raw"


# --- keep-alive -----------------------------------------------------------------------------------


def test_one_connection_serves_request_after_request(servers):
    server = servers(Answer(200, INTENT))
    gateway = gateway_for(server.url)
    for _ in range(5):
        create_intent(gateway)
    assert len(server.requests) == 5
    assert server.connections == 1


def test_threads_share_the_kept_connections(servers):
    """16 threads (a batch of renewals side by side) at once: at most one connection each, and
    they are kept for the next requests."""
    server = servers(Answer(200, INTENT))
    gateway = gateway_for(server.url)
    with ThreadPoolExecutor(max_workers=16) as pool:
        for _ in range(3):
            assert all(
                s.id == "pi_raw" for s in pool.map(lambda _: create_intent(gateway), range(64))
            )
    assert len(server.requests) == 192
    assert server.connections <= 16
    opened = server.connections
    for _ in range(5):
        create_intent(gateway)
    assert server.connections == opened


# --- the proxy of the environment, read once ------------------------------------------------------


@CLIENTS
def test_https_proxy_set_before_is_used_for_stripe(monkeypatch, servers, client):
    """HTTPS_PROXY names a proxy: the client asks it for a tunnel to Stripe (CONNECT), with the
    credentials of its URL. This stand-in refuses the tunnel: retried, then unavailable."""
    proxy = servers(Answer(502))
    monkeypatch.setenv("HTTPS_PROXY", f"http://bill%40ing:s3cret@127.0.0.1:{proxy.port}")
    gateway = gateway_for("", client)  # real Stripe: https://api.stripe.com
    error = unavailable(gateway)
    assert error.should_retry
    assert [(r.method, r.target) for r in proxy.requests] == [("CONNECT", "api.stripe.com:443")] * 3
    # "bill@ing:s3cret" in base64
    assert proxy.requests[0].headers["proxy-authorization"] == "Basic YmlsbEBpbmc6czNjcmV0"


@CLIENTS
def test_http_proxy_set_before_carries_the_requests(monkeypatch, servers, client):
    """An http base (localstripe's kind) through HTTP_PROXY: the proxy gets the absolute URL and
    its answer is Stripe's (the host itself is never looked up)."""
    proxy = servers(Answer(200, INTENT))
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    assert create_intent(gateway_for("http://stripe.invalid:8420", client)).id == "pi_raw"
    assert [r.target for r in proxy.requests] == ["http://stripe.invalid:8420/v1/payment_intents"]


def test_a_proxy_set_after_construction_changes_nothing(monkeypatch, servers):
    stripe_stand_in, proxy = servers(Answer(200, INTENT)), servers(Answer(502))
    gateway = gateway_for(stripe_stand_in.url)
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy.url)
    assert create_intent(gateway).id == "pi_raw"
    assert len(stripe_stand_in.requests) == 1
    assert proxy.requests == []


def test_no_proxy_covering_stripe_goes_direct(monkeypatch, servers):
    stripe_stand_in, proxy = servers(Answer(200, INTENT)), servers(Answer(502))
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    gateway = gateway_for(stripe_stand_in.url)
    assert gateway.http_client.proxy is None
    assert create_intent(gateway).id == "pi_raw"
    assert proxy.requests == []


P, STRIPE, LOCAL = "http://p:3128", "https://api.stripe.com", "http://127.0.0.1:8420"


@pytest.mark.parametrize(
    ("variables", "url", "proxy"),
    [
        ({"HTTPS_PROXY": P}, STRIPE, P),
        ({"https_proxy": "p:3128"}, STRIPE, P),
        ({"ALL_PROXY": P}, STRIPE, P),
        ({"HTTP_PROXY": P}, STRIPE, None),
        ({"HTTP_PROXY": P}, LOCAL, P),
        ({"HTTPS_PROXY": P, "NO_PROXY": "localhost,stripe.com"}, STRIPE, None),
        ({"HTTPS_PROXY": P, "NO_PROXY": "*"}, STRIPE, None),
        ({"HTTP_PROXY": P, "NO_PROXY": "127.0.0.1"}, LOCAL, None),
        ({"HTTPS_PROXY": P, "NO_PROXY": "pi.stripe.com"}, STRIPE, P),  # a domain, not a suffix
    ],
)
def test_environment_proxy(monkeypatch, variables, url, proxy):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert environment_proxy(url) == proxy
