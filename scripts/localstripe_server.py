"""Run localstripe (the offline fake Stripe) the way this project needs it.

    python scripts/localstripe_server.py --port 8420 --data-dir var/localstripe [--fresh]

Differences from ``localstripe`` (localstripe 1.15.10), all applied at runtime to the installed
package, none of its code copied:

* listens on 127.0.0.1 only (localstripe binds every interface, IPv4 and IPv6);
* keeps its pickle file in ``--data-dir`` instead of ``/tmp/localstripe.pickle`` (shared by every
  user and every copy on the machine), written whole (a temporary file renamed) and loaded again
  at the next start, so Stripe's side outlives a restart as billing's and pay_api's databases do
  (``--fresh`` deletes it first: an empty store, as ``localstripe --from-scratch``);
* one fidelity fix, so pay_api runs the same code as against real Stripe:
  ``POST /v1/payment_intents/{id}/confirm`` accepts ``payment_method``. localstripe answers
  500 "Not implemented" to it, and after a charge-time decline (card 4000000000000341) keeps the
  PaymentIntent in ``requires_payment_method`` while refusing to confirm it again. Real Stripe
  confirms a PaymentIntent in ``requires_payment_method``, ``requires_confirmation`` or
  ``requires_action`` with a new ``payment_method``: the new method replaces the old one, the
  failed charge stays in the history and a new attempt is made. The fix does exactly that (set the
  new payment method, forget the failed attempt, then run localstripe's own confirm).

Everything else localstripe does differently (no idempotency keys, unknown parameters refused, no
refund/charge events, refunds not capped...) is left as is; pay_api copes with it in
``pay_api/src/pay_api/gateway.py`` (``LocalstripeDifferences``) and in its own design.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import socket
import tempfile
from pathlib import Path

from localstripe import resources
from localstripe.errors import UserError

PICKLE_NAME = "localstripe.pickle"
CONFIRMABLE_STATUSES = ("requires_payment_method", "requires_confirmation", "requires_action")


def keep_store_in(data_dir: Path, *, fresh: bool = False) -> None:
    """Point localstripe's persistence at ``data_dir`` and load what it holds (nothing if fresh)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    pickle_path = data_dir / PICKLE_NAME
    if fresh:
        pickle_path.unlink(missing_ok=True)

    def dump_to_disk(store: resources.Store) -> None:
        # Written to a temporary file and renamed: a reader never sees half a file.
        fd, tmp_name = tempfile.mkstemp(dir=data_dir, prefix=".localstripe-")
        with os.fdopen(fd, "wb") as tmp:
            pickle.dump(dict(store), tmp, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp_name, pickle_path)

    def try_load_from_disk(store: resources.Store) -> None:
        store.clear()
        if pickle_path.exists():
            with pickle_path.open("rb") as file:
                dict.update(store, pickle.load(file))  # noqa: S301 - our own file

    resources.Store.dump_to_disk = dump_to_disk
    resources.Store.try_load_from_disk = try_load_from_disk
    resources.store.try_load_from_disk()


def allow_confirm_with_new_payment_method() -> None:
    """The fidelity fix described in the module docstring."""
    payment_intent_cls = resources.PaymentIntent
    localstripe_confirm = payment_intent_cls._api_confirm  # bound classmethod

    def confirm(id=None, payment_method=None, **kwargs):  # noqa: A002 - localstripe's names
        if payment_method is not None:
            if not (isinstance(id, str) and id.startswith("pi_")):
                raise UserError(400, "Bad request")
            if not isinstance(payment_method, str):
                raise UserError(400, "Bad request")
            intent = payment_intent_cls._api_retrieve(id)
            if intent.status not in CONFIRMABLE_STATUSES:
                raise UserError(
                    400,
                    "You cannot confirm this PaymentIntent because it has a status of "
                    f"{intent.status}.",
                    {"code": "payment_intent_unexpected_state"},
                )
            resources.PaymentMethod._api_retrieve(payment_method)  # 404 when unknown
            intent.payment_method = payment_method
            intent.next_action = None
            intent._authentication_failed = False
            if intent.latest_charge is not None and intent.latest_charge.status == "failed":
                intent.latest_charge = None  # the failed charge itself stays in the store
        return localstripe_confirm(id, **kwargs)

    payment_intent_cls._api_confirm = staticmethod(confirm)
    # The routes are built from `extra_apis` when localstripe.server is imported, so the entry
    # is replaced there too (server is imported only after this function ran).
    for index, (method, url, _func) in enumerate(resources.extra_apis):
        if method == "POST" and url == "/v1/payment_intents/{id}/confirm":
            resources.extra_apis[index] = (method, url, confirm)
            break
    else:  # pragma: no cover - a localstripe upgrade moved the route
        raise RuntimeError("localstripe's PaymentIntent confirm route was not found")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--host", default="127.0.0.1", help="loopback only by default")
    parser.add_argument("--data-dir", type=Path, default=Path("var/localstripe"))
    parser.add_argument("--fresh", action="store_true", help="forget the stored objects first")
    args = parser.parse_args()

    keep_store_in(args.data_dir.resolve(), fresh=args.fresh)
    allow_confirm_with_new_payment_method()

    from aiohttp import web
    from localstripe import server  # imported late: it reads `extra_apis` on import

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))

    access_log = logging.getLogger("aiohttp.access")
    access_log.setLevel(logging.INFO)
    access_log.addHandler(logging.StreamHandler())
    web.run_app(server.app, sock=sock, access_log=access_log, print=None)


if __name__ == "__main__":
    main()
