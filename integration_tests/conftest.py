"""Black-box fixtures: a whole stack of the system, started as local processes on ports of its own.

By default the session starts a fresh stack (`scripts/stack.sh up --fresh`) with the settings of
`faults.own_stack.stack_env` (ports 28000+) and stops it at the end. `IT_USE_RUNNING_STACK=1` runs the tests against the
stack `make up` started instead (its settings come from .env / .env.example).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import allure
import httpx
import pytest

from integration_tests.clients import StackSettings
from integration_tests.clients.stack import ROOT
from integration_tests.faults.own_stack import own_stack, stack_env
from integration_tests.faults.tools import Faults

# IT_PORT_BASE / IT_NAME let two checkouts (or two people) run the suite side by side.
TEST_STACK = stack_env(
    port_base=int(os.environ.get("IT_PORT_BASE", "28000")),
    name=os.environ.get("IT_NAME", "it"),
    redis_db=int(os.environ.get("IT_REDIS_DB", "9")),
)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Allure results always land in var/allure-results (make report builds the HTML from them)."""
    if not config.option.allure_report_dir:
        config.option.allure_report_dir = str(ROOT / "var" / "allure-results")


USE_RUNNING_STACK = os.environ.get("IT_USE_RUNNING_STACK") == "1"


def pytest_collection_modifyitems(config, items):
    """Tests that move the stack's clock forward run last (time moved for them would expire what
    other tests wait for). The fault tests need the stack this session starts (its proxy and
    crash points): against a running stack they are left out, and said so."""
    items.sort(key=lambda item: item.get_closest_marker("moves_clock") is not None)
    if not USE_RUNNING_STACK:
        return
    faults = [item for item in items if item.get_closest_marker("faults")]
    if faults:
        config.hook.pytest_deselected(items=faults)
        items[:] = [item for item in items if not item.get_closest_marker("faults")]
        print(f"\n{len(faults)} fault tests left out: they need the session's own stack")


@pytest.fixture(scope="session")
def _own_stack():
    with own_stack(TEST_STACK) as (settings, proxy):
        yield settings, proxy


@pytest.fixture(scope="session")
def fault_proxy(_own_stack):
    return _own_stack[1]


@pytest.fixture(scope="session")
def stack(request) -> StackSettings:
    if USE_RUNNING_STACK:
        return StackSettings.load()
    return request.getfixturevalue("_own_stack")[0]


@pytest.fixture
def faults(stack, fault_proxy, on_exchange) -> Iterator[Faults]:
    """The fault tests' tools; every crash point disarmed, every proxy rule and the webhook
    restored after each test."""
    tools = Faults(stack, on_exchange=on_exchange)
    yield tools
    tools.disarm_all()
    fault_proxy.clear()
    tools.restore_webhooks()


def attach_exchange(response: httpx.Response) -> None:
    """Attach one HTTP exchange (request and response) to the current Allure step."""
    request = response.request
    body = request.content.decode(errors="replace") if request.content else ""
    text = (
        f"{request.method} {request.url}\n\n{body}\n\n"
        f"HTTP {response.status_code}\n{_pretty(response)}"
    )
    allure.attach(text, name=f"{request.method} {request.url.path}", attachment_type="text/plain")


def _pretty(response: httpx.Response) -> str:
    try:
        return json.dumps(response.json(), indent=2, ensure_ascii=False)
    except ValueError:
        return response.text[:2000]


@pytest.fixture
def on_exchange():
    return attach_exchange


# --- the browser (Debian's Chromium driven by Playwright; no browser download) -------------------

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser page; its screenshot is attached to the report when the test fails."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        allure.attach(
            page.screenshot(full_page=True),
            name="screenshot on failure",
            attachment_type=allure.attachment_type.PNG,
        )
    context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def screenshot(page, name: str) -> None:
    """Attach a screenshot of the page as it is now to the current Allure step."""
    allure.attach(
        page.screenshot(full_page=True), name=name, attachment_type=allure.attachment_type.PNG
    )
