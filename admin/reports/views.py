"""The dashboard (the admin's home page) and the CSV exports, both read from billing's report
endpoints (docs/contracts.md, "Reports"); nothing is computed or stored here."""

from __future__ import annotations

import logging
from datetime import date

from catalog.currencies import format_money, minor_unit_digits
from customers import billing
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from reports import charts
from reports.forms import PAYMENT_STATUSES, REFUND_STATUSES, DashboardForm, ExportForm

log = logging.getLogger("admin.reports")

# What each figure means, shown under the charts (the same words as docs/contracts.md).
DEFINITIONS = [
    ("Gross", "money taken: charges booked in the period"),
    ("Refunds", "refunds booked in the period, less refunds the bank returned in it"),
    ("Net", "gross − refunds"),
    ("Refund rate", "refunds ÷ gross of the same period"),
    ("MRR", "paid periods that will renew, brought to a 30-day month, at the period's end"),
    ("Active subscribers", "users holding a paid period at the period's end"),
    ("New", "subscriptions whose first payment succeeded in the period"),
    ("Churned", "subscriptions that ended (expired or refunded) in the period"),
    ("Failed payments / renewals", "first / renewal payments started in the period that ended "
     "without money after a decline"),
    ("Renewals", "renewal payments that succeeded in the period"),
]  # fmt: skip

EXPORTS = {"payments": PAYMENT_STATUSES, "refunds": REFUND_STATUSES}


def dashboard_context(request: HttpRequest) -> dict:
    """Everything the dashboard shows, for the admin's index page."""
    form = DashboardForm(request.GET or None)
    granularity, date_from, date_to = form.period(timezone.now().date())
    context: dict = {
        "dashboard_form": form,
        "granularity": granularity,
        "date_from": date_from,
        "date_to": date_to,
        "definitions": DEFINITIONS,
        "export_forms": {
            name: ExportForm(statuses=statuses, prefix=name) for name, statuses in EXPORTS.items()
        },
        "can_export": request.user.has_perm("reports.export_data"),
    }
    try:
        summary = billing.report_summary(
            date_from=date_from, date_to=date_to, granularity=granularity
        )
    except billing.BillingError as exc:
        context["billing_error"] = exc
        return context
    currencies = summary["currencies"]
    wanted = (form.cleaned_data.get("currency") if form.is_bound and form.is_valid() else "") or ""
    currency = wanted if wanted in currencies else ("usd" if "usd" in currencies else "")
    currency = currency or (currencies[0] if currencies else "")
    context.update(currencies=currencies, currency=currency, as_of=summary["as_of"])
    if not currency:
        return context
    rows = [r for r in summary["series"] if r["currency"] == currency]
    totals = next(t for t in summary["totals"] if t["currency"] == currency)
    context.update(
        totals=_shown(totals, currency),
        rows=[{**_shown(r, currency), "label": _label(r, granularity)} for r in rows],
        charts=_charts(rows, currency, granularity),
        currency_links=[(c, _query(request, currency=c), c == currency) for c in currencies],
    )
    return context


def _query(request: HttpRequest, **changes) -> str:
    query = request.GET.copy()
    for key, value in changes.items():
        query[key] = value
    return "?" + query.urlencode()


def _label(row: dict, granularity: str) -> str:
    start = date.fromisoformat(row["period_start"])
    return start.strftime("%b %Y") if granularity == "month" else start.strftime("%d %b")


def _shown(row: dict, currency: str) -> dict:
    money = ("gross", "refunds", "net", "mrr")
    rate = row["refund_rate"]
    return {
        **row,
        **{f"{k}_display": format_money(row[k], currency) for k in money},
        "refund_rate_display": "—" if rate is None else f"{rate * 100:.1f} %",
    }


def _charts(rows: list[dict], currency: str, granularity: str) -> list:
    labels = [_label(r, granularity) for r in rows]
    scale = 10 ** minor_unit_digits(currency)

    def units(key: str) -> list[float]:
        return [r[key] / scale for r in rows]

    def count(key: str) -> list[float]:
        return [float(r[key]) for r in rows]

    money = f"{{:,.{minor_unit_digits(currency)}f}}".format
    code = currency.upper()
    return [
        charts.chart(
            title=f"Revenue ({code})",
            labels=labels,
            bars=[
                charts.Series("gross", units("gross"), "#417690"),
                charts.Series("refunds", units("refunds"), "#d9822b"),
            ],
            lines=[charts.Series("net", units("net"), "#2e7d32")],
            fmt=money,
        ),
        charts.chart(
            title=f"MRR ({code}, at each period's end)",
            labels=labels,
            lines=[charts.Series("MRR", units("mrr"), "#6a1b9a")],
            fmt=money,
        ),
        charts.chart(
            title="Subscribers",
            labels=labels,
            bars=[
                charts.Series("new", count("new_subscribers"), "#2e7d32"),
                charts.Series("churned", count("churned_subscribers"), "#c62828"),
            ],
            lines=[charts.Series("active", count("active_subscribers"), "#417690")],
        ),
        charts.chart(
            title="Payments that failed, and renewals",
            labels=labels,
            bars=[
                charts.Series("failed payments", count("failed_payments"), "#c62828"),
                charts.Series("renewals", count("renewals"), "#417690"),
                charts.Series("failed renewals", count("failed_renewals"), "#d9822b"),
            ],
        ),
    ]


def export_csv(request: HttpRequest, name: str) -> HttpResponse:
    """Stream billing's CSV to the manager as it arrives: rows pass through, never all held."""
    if not request.user.has_perm("reports.export_data"):
        raise PermissionDenied
    form = ExportForm(request.GET, statuses=EXPORTS[name], prefix=name)
    context = {**admin.site.each_context(request), "title": f"Export {name}", "form": form}
    if not form.is_valid():
        return render(request, "reports/export_error.html", context, status=400)
    params = form.billing_params()
    try:
        chunks = billing.open_export(name=name, params=params)
    except billing.BillingError as exc:
        context["billing_error"] = exc
        status = 502 if isinstance(exc, billing.BillingUnavailable) else 400
        return render(request, "reports/export_error.html", context, status=status)
    log.info(
        "export",
        extra={"action": "export", "export": name, "manager": request.user.get_username(),
               **{k: str(v) for k, v in params.items() if v}},
    )  # fmt: skip
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.csv"'
    return response
