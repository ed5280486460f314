import json
import uuid

import psycopg
import pytest
from etl.load import BillingUnavailable
from etl.state import StateStore
from etl.sync import Etl


def seed(admin):
    """The demo catalog: two films in a plan, one free film, one inactive film."""
    matrix = admin.add_film("The Matrix")
    inception = admin.add_film("Inception")
    nosferatu = admin.add_film("Nosferatu (1922)")
    retired = admin.add_film("Retired", active=False)
    premium = admin.add_plan("Premium monthly", films=[matrix, inception])
    everything = admin.add_plan("Everything", all_films=True, price_amount=1999, currency="eur")
    return {
        "matrix": matrix,
        "inception": inception,
        "nosferatu": nosferatu,
        "retired": retired,
        "premium": premium,
        "everything": everything,
    }


def state_file(settings) -> dict:
    return json.loads(settings.state_file.read_text())


def test_first_pass_copies_every_film_and_plan(admin, billing, etl, settings):
    ids = seed(admin)

    result = etl.run_once()

    assert billing.films == {
        ids["matrix"]: {"title": "The Matrix", "active": True},
        ids["inception"]: {"title": "Inception", "active": True},
        ids["nosferatu"]: {"title": "Nosferatu (1922)", "active": True},
        ids["retired"]: {"title": "Retired", "active": False},
    }
    assert billing.plans[ids["premium"]] == {
        "name": "Premium monthly",
        "description": "Premium monthly plan",
        "price_amount": 999,
        "currency": "usd",
        "period_unit": "month",
        "period_count": 1,
        "refund_window_days": 14,
        "active": True,
        "all_films": False,
        "film_ids": sorted([ids["matrix"], ids["inception"]]),
    }
    assert billing.plans[ids["everything"]]["all_films"] is True
    assert billing.plans[ids["everything"]]["film_ids"] == []
    # Films before plans: every plan's films were known to billing when the plan arrived.
    methods_paths = billing.calls()
    assert [p.split("/")[3] for _, p in methods_paths] == ["films"] * 4 + ["plans"] * 2
    assert result.total("changed") == 6 and result.total("rejected") == 0
    # Every call carried a valid service token (the stub checks iss=etl, aud=billing, exp).
    assert all(r.token_claims and r.token_claims["iss"] == "etl" for r in billing.requests)
    saved = state_file(settings)["streams"]
    assert saved["plans"]["watermark"]["key"] in {ids["premium"], ids["everything"]}
    assert saved["films"]["watermark"] is not None


def test_second_pass_sends_nothing_and_a_full_pass_changes_nothing(admin, billing, etl, settings):
    seed(admin)
    etl.run_once()
    sent_first = len(billing.requests)
    state_before = state_file(settings)["streams"]

    again = etl.run_once()

    assert len(billing.requests) == sent_first
    assert again.total("sent") == 0
    assert state_file(settings)["streams"] == state_before

    full = etl.run_once(full=True)

    assert full.total("unchanged") == 6
    assert full.total("changed") == 0
    assert all(r.answer["changed"] is False for r in billing.requests[sent_first:])


def test_update_deactivation_and_deletions_propagate(admin, billing, etl):
    ids = seed(admin)
    etl.run_once()
    billing.requests.clear()

    admin.update_film(ids["nosferatu"], title="Nosferatu, eine Symphonie des Grauens")
    admin.update_plan(ids["everything"], active=False)
    admin.delete_film(ids["inception"])  # leaves Premium monthly with The Matrix only
    doomed = admin.add_plan("Short-lived", films=[ids["matrix"]])
    etl.run_once()
    admin.delete_plan(doomed)
    etl.run_once()

    assert billing.films[ids["nosferatu"]]["title"] == "Nosferatu, eine Symphonie des Grauens"
    assert billing.plans[ids["everything"]]["active"] is False
    assert billing.films[ids["inception"]]["active"] is False  # deactivated, not removed
    assert billing.plans[ids["premium"]]["film_ids"] == [ids["matrix"]]
    assert billing.plans[doomed]["active"] is False
    # Only what changed was sent; the deleted film left its plan before it was deactivated.
    assert billing.calls() == [
        ("PUT", f"/internal/v1/films/{ids['nosferatu']}"),
        ("PUT", f"/internal/v1/plans/{ids['everything']}"),
        ("PUT", f"/internal/v1/plans/{ids['premium']}"),
        ("PUT", f"/internal/v1/plans/{doomed}"),
        ("DELETE", f"/internal/v1/films/{ids['inception']}"),
        ("DELETE", f"/internal/v1/plans/{doomed}"),
    ]


def test_a_film_recreated_after_its_deletion_stays_active(admin, billing, etl):
    film = admin.add_film("Phoenix")
    etl.run_once()
    admin.delete_film(film)
    admin.add_film("Phoenix", film_id=film)

    etl.run_once()

    assert billing.films[film] == {"title": "Phoenix", "active": True}
    assert ("DELETE", f"/internal/v1/films/{film}") not in billing.calls()


@pytest.mark.parametrize("outage", ["503", "connection_refused"])
def test_billing_down_loses_nothing_and_keeps_the_watermark(admin, billing, etl, settings, outage):
    ids = seed(admin)
    etl.run_once()
    admin.update_film(ids["matrix"], title="The Matrix (4K)")
    admin.update_plan(ids["premium"], price_amount=1099)
    state_before = settings.state_file.read_text()

    if outage == "503":
        billing.fail_status = 503
    else:
        billing.stop()
    with pytest.raises(BillingUnavailable):
        etl.run_once()
    assert settings.state_file.read_text() == state_before  # watermark not advanced

    if outage == "503":
        billing.fail_status = None
    else:
        billing.start()
    etl.run_once()

    assert billing.films[ids["matrix"]]["title"] == "The Matrix (4K)"
    assert billing.plans[ids["premium"]]["price_amount"] == 1099
    assert etl.run_once().total("sent") == 0


def test_billing_failing_mid_pass_keeps_what_was_accepted(admin, billing, etl, settings):
    ids = seed(admin)
    billing.fail_status, billing.fail_prefix = 500, "/internal/v1/plans/"

    with pytest.raises(BillingUnavailable):
        etl.run_once()

    saved = state_file(settings)["streams"]
    assert saved["films"]["watermark"] is not None  # films were accepted and are not resent
    assert "plans" not in saved or saved["plans"]["watermark"] is None
    assert billing.plans == {}

    billing.fail_status = None
    billing.requests.clear()
    etl.run_once()

    assert set(billing.plans) == {ids["premium"], ids["everything"]}
    assert all("/plans/" in path for _, path in billing.calls())


def test_a_row_billing_refuses_does_not_block_the_others(admin, billing, etl, settings):
    good = admin.add_film("Good")
    bad = admin.add_film("Bad")
    later = admin.add_film("Later")
    billing.rejected_ids.add(bad)

    result = etl.run_once()

    assert set(billing.films) == {good, later}
    assert result.total("rejected") == 1
    rejected = state_file(settings)["streams"]["films"]["rejected"]
    assert rejected[bad]["status"] == 422 and rejected[bad]["code"] == "validation_error"
    # Not retried on every pass...
    billing.requests.clear()
    etl.run_once()
    assert billing.requests == []
    # ...but as soon as the row changes (a manager fixed it) it is sent again.
    billing.rejected_ids.clear()
    admin.update_film(bad, title="Bad, fixed")
    etl.run_once()
    assert billing.films[bad] == {"title": "Bad, fixed", "active": True}
    assert state_file(settings)["streams"]["films"]["rejected"] == {}


def test_a_row_committed_late_with_an_older_timestamp_is_not_skipped(
    admin, billing, etl, admin_database_url
):
    late_id = str(uuid.uuid4())
    early_time = admin.tick()  # the late transaction's save() happened first...
    with psycopg.connect(admin_database_url) as slow:
        slow.execute(
            "INSERT INTO catalog_film (id, title, description, active, created_at, updated_at)"
            " VALUES (%s, 'Committed late', '', true, %s, %s)",
            (late_id, early_time, early_time),
        )
        quick = admin.add_film("Committed first")  # ...but this one committed first
        etl.run_once()
        assert set(billing.films) == {quick}  # the watermark is now past early_time
        slow.commit()

    etl.run_once()

    assert billing.films[late_id] == {"title": "Committed late", "active": True}
    assert [path for _, path in billing.calls()].count(f"/internal/v1/films/{quick}") == 1


def test_state_is_replaced_atomically(tmp_path, admin, etl, settings):
    admin.add_film("One")
    etl.run_once()
    folder = settings.state_file.parent
    assert [p.name for p in folder.iterdir()] == ["state.json"]  # no temporary files left
    loaded = StateStore(settings.state_file).load()
    assert loaded["films"].watermark is not None


def test_a_new_worker_resumes_from_the_saved_state(admin, billing, settings):
    seed(admin)
    first = Etl(settings)
    first.run_once()
    first.close()
    sent = len(billing.requests)

    second = Etl(settings)
    try:
        assert second.run_once().total("sent") == 0
    finally:
        second.close()
    assert len(billing.requests) == sent
