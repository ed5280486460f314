"""scripts/localstripe_server.py: loopback only, its file in the data dir, confirm with a new
payment method after a decline (the documented fidelity fix)."""

import socket

import httpx

KEY = ("sk_test_offline", "")


def test_listens_on_loopback_only(localstripe_server):
    base, _ = localstripe_server
    port = int(base.rsplit(":", 1)[1])
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        assert sock.connect_ex(("::1", port)) != 0  # localstripe alone binds '::' (everything)


def test_keeps_its_file_in_the_data_dir(localstripe_server):
    base, data_dir = localstripe_server
    httpx.post(f"{base}/v1/customers", data={"name": "file test"}, auth=KEY).raise_for_status()
    assert (data_dir / "localstripe.pickle").stat().st_size > 0


def _pm(base, number):
    response = httpx.post(
        f"{base}/v1/payment_methods",
        data={
            "type": "card",
            "card[number]": number,
            "card[exp_month]": "12",
            "card[exp_year]": "2034",
            "card[cvc]": "123",
        },
        auth=KEY,
    )
    response.raise_for_status()
    return response.json()["id"]


def test_confirm_with_a_new_payment_method_after_a_decline(localstripe):
    base = localstripe
    intent = httpx.post(
        f"{base}/v1/payment_intents",
        data={"amount": 700, "currency": "usd", "payment_method": _pm(base, "4000000000000341")},
        auth=KEY,
    ).json()
    declined = httpx.post(f"{base}/v1/payment_intents/{intent['id']}/confirm", auth=KEY)
    assert declined.status_code == 402
    assert httpx.get(f"{base}/v1/payment_intents/{intent['id']}", auth=KEY).json()["status"] == (
        "requires_payment_method"
    )
    retried = httpx.post(
        f"{base}/v1/payment_intents/{intent['id']}/confirm",
        data={"payment_method": _pm(base, "4242424242424242")},
        auth=KEY,
    )
    assert retried.status_code == 200
    assert retried.json()["status"] == "succeeded"
    again = httpx.post(
        f"{base}/v1/payment_intents/{intent['id']}/confirm",
        data={"payment_method": _pm(base, "4242424242424242")},
        auth=KEY,
    )
    assert again.status_code == 400  # a succeeded intent cannot be confirmed again
