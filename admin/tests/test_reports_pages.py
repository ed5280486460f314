"""The dashboard (the admin's home page) and the CSV exports, against the billing stand-in; the
figures themselves are billing's and tested there (billing/tests/test_billing_reports.py)."""

import re
from datetime import timedelta

import pytest
from catalog.models import Plan
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from reports import views as report_views
from reports.charts import Series, chart, nice_ceiling
from reports.forms import REFUND_STATUSES

pytestmark = pytest.mark.django_db


def figures(currency: str, **values) -> dict:
    base = dict.fromkeys(
        ["gross", "refunds", "net", "new_subscribers", "churned_subscribers", "failed_payments",
         "renewals", "failed_renewals", "active_subscribers", "mrr"], 0,
    )  # fmt: skip
    return {"currency": currency, **base, "refund_rate": None, **values}


SUMMARY = {
    "granularity": "day",
    "date_from": "2026-11-01",
    "date_to": "2026-11-02",
    "as_of": "2026-11-03T00:00:00+00:00",
    "currencies": ["jpy", "usd"],
    "series": [
        {"period_start": "2026-11-01", "period_end": "2026-11-02",
         **figures("usd", gross=5100, refunds=1300, net=3800, refund_rate=0.2549, mrr=1000,
                   active_subscribers=2, new_subscribers=5)},
        {"period_start": "2026-11-02", "period_end": "2026-11-03",
         **figures("usd", refunds=-200, net=200, refund_rate=None, mrr=1000)},
        {"period_start": "2026-11-01", "period_end": "2026-11-02", **figures("jpy", gross=1000)},
        {"period_start": "2026-11-02", "period_end": "2026-11-03", **figures("jpy")},
    ],
    "totals": [
        figures("jpy", gross=1000, net=1000, refund_rate=0.0, mrr=1000, active_subscribers=1),
        figures("usd", gross=5100, refunds=1100, net=4000, refund_rate=0.2157, mrr=1000,
                active_subscribers=2, new_subscribers=5, churned_subscribers=3),
    ],
}  # fmt: skip


def dashboard(html: str) -> str:
    return html.split('<section id="dashboard"', 1)[1].split("</section>", 1)[0]


def test_the_home_page_is_the_dashboard_with_charts(manager_client, billing):
    billing.summary = SUMMARY
    html = manager_client.get(reverse("admin:index")).content.decode()
    section = dashboard(html)
    assert "51.00 USD" in section and "40.00 USD" in section and "21.6 %" in section
    assert section.count("<svg") == 4 and "<title>01 Nov — gross: 51.00</title>" in section
    assert "<title>02 Nov — refunds: -2.00</title>" in section  # a bank returned a refund
    assert "What each figure means" in section and "Churned" in section
    assert 'href="/static/reports/dashboard.css"' in html
    # Nothing inline that a strict Content-Security-Policy would block.
    assert "<script" not in section and "style=" not in section
    (summary_call,) = [r for r in billing.requests if r["path"].startswith("/internal/v1/reports")]
    today = timezone.now().date()
    assert summary_call["path"] == (
        f"/internal/v1/reports/summary?date_from={today - timedelta(days=29)}"
        f"&date_to={today}&granularity=day"
    )
    assert 'id="export-payments"' in section and 'id="export-refunds"' in section


def test_the_dashboard_switches_currency_and_granularity(manager_client, billing):
    billing.summary = SUMMARY
    response = manager_client.get(
        reverse("admin:index"),
        {"currency": "jpy", "granularity": "month", "date_from": "2026-01-01", "date_to": "2026-11-30"},
    )  # fmt: skip
    section = dashboard(response.content.decode())
    assert "1,000 JPY" in section and "51.00 USD" not in section
    assert billing.requests[-1]["path"].endswith(
        "date_from=2026-01-01&date_to=2026-11-30&granularity=month"
    )


def test_the_dashboard_says_when_billing_is_down_and_the_page_still_works(manager_client, billing):
    billing.close()
    response = manager_client.get(reverse("admin:index"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Billing is unreachable" in dashboard(html) and "Catalog" in html


def test_the_payments_export_streams_billings_rows_with_the_filters(manager_client, billing):
    billing.export_rows = 5000
    plan = Plan.objects.create(name="Gold", price_amount=999, all_films=True)
    response = manager_client.get(
        reverse("admin:reports_export", args=["payments"]),
        {"payments-date_from": "2026-11-01", "payments-date_to": "2026-11-30",
         "payments-status": "succeeded", "payments-currency": "usd", "payments-plan_id": str(plan.pk)},
    )  # fmt: skip
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)  # passed through, never held whole
    assert re.match(
        r'attachment; filename="payments-\d{8}-\d{6}\.csv"', response["Content-Disposition"]
    )
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0] == "payment_id,amount,currency" and len(lines) == 5001
    (call,) = [r for r in billing.requests if r["path"].endswith(".csv")]
    assert call["path"] == "/internal/v1/reports/payments.csv" and call["claims"]["iss"] == "admin"
    assert call["query"] == {"date_from": "2026-11-01", "date_to": "2026-11-30",
                             "status": "succeeded", "currency": "usd", "plan_id": str(plan.pk)}  # fmt: skip


def test_export_errors_are_readable_and_nothing_is_downloaded(manager_client, billing):
    url = reverse("admin:reports_export", args=["refunds"])
    bad = manager_client.get(
        url, {"refunds-date_from": "2026-11-30", "refunds-date_to": "2026-11-01"}
    )
    assert bad.status_code == 400 and "The end is before the start." in bad.content.decode()
    unknown = manager_client.get(url, {"refunds-status": "partially_refunded"})
    assert unknown.status_code == 400
    assert not [r for r in billing.requests if r["path"].endswith(".csv")]
    billing.close()
    down = manager_client.get(url)
    assert down.status_code == 502 and "Billing is unreachable" in down.content.decode()


def test_export_refused_by_billing_shows_its_code(manager_client, billing, monkeypatch):
    # A status the admin's form allows but billing does not (the stand-in refuses "bogus").
    monkeypatch.setitem(report_views.EXPORTS, "refunds", [*REFUND_STATUSES, "bogus"])
    response = manager_client.get(
        reverse("admin:reports_export", args=["refunds"]), {"refunds-status": "bogus"}
    )
    assert response.status_code == 400 and "validation_error" in response.content.decode()


def test_axis_tops_are_round_numbers():
    assert [nice_ceiling(v) for v in (0, 0.7, 3, 7, 12, 240, 999)] == [1, 1, 5, 10, 20, 250, 1000]


def test_count_charts_step_in_whole_numbers():
    svg = chart(title="Subscribers", labels=["a"], bars=[Series("new", [1], "#2e7d32")])
    ticks = re.findall(r'text-anchor="end">([^<]+)</text>', svg)
    assert ticks == ["0", "1", "2", "3", "4"]


def test_charts_escape_their_text_and_draw_negative_bars_below_zero():
    svg = chart(
        title="<b>Revenue</b>",
        labels=["a&b", "c"],
        bars=[Series("refunds", [5, -5], "#d9822b")],
    )
    assert "<b>" not in svg and "&lt;b&gt;Revenue&lt;/b&gt;" in svg and "a&amp;b" in svg
    heights = re.findall(
        r'<rect x="[^"]+" y="([^"]+)" width="[^"]+" height="([^"]+)" fill="#d9822b">', svg
    )
    (y_up, h_up), (y_down, h_down) = [(float(y), float(h)) for y, h in heights]
    assert h_up == h_down > 0 and y_down == pytest.approx(y_up + h_up)  # mirrored around zero
