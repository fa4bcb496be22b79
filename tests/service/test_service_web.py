"""The chat page at ``/``, driven in a real headless Chromium (Debian's ``chromium``, which
``make services`` installs): sign in, create a session, chat with the reply streaming in, and
find the conversation again after a reload. A screenshot is kept in the test's tmp dir."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from conftest import ALICE_KEY, Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make services` installs it", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    try:
        yield opened
    finally:
        context.close()


def sign_in(page: Page, service: Service, key: str) -> None:
    page.goto(f"{service.url}/")
    page.fill("#key", key)
    page.click("#signin-form button")


def test_the_page_and_its_files_are_served_with_a_strict_policy(shared_service: Service) -> None:
    for path, kind in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
    ]:
        response = httpx.get(f"{shared_service.url}{path}")

        assert response.status_code == 200
        assert response.headers["content-type"] == f"{kind}; charset=utf-8"
        assert "script-src 'self';" in response.headers["content-security-policy"]


def test_a_person_chats_with_the_reply_streaming_in_and_finds_it_after_a_reload(
    start_service: Callable[..., Service], page: Page, tmp_path: Path
) -> None:
    service = start_service(offline_delay=0.15)
    sign_in(page, service, ALICE_KEY)
    expect(page.locator("#user")).to_have_text("alice")

    page.fill("#new-name", "Browser chat")
    page.click("#new-session button")
    expect(page.locator("#title")).to_have_text("Browser chat")
    expect(page.locator("#sessions li.current")).to_contain_text("Browser chat")
    page.fill("#content", "Hello from the browser")
    page.press("#content", "Enter")

    reply = page.locator("#messages li.assistant")
    # Part of the reply is on the page while the rest is still coming.
    page.wait_for_function(
        "() => { const r = document.querySelector('#messages li.assistant');"
        " return r && r.dataset.state === 'streaming' && r.textContent.length > 0; }"
    )
    expect(reply).to_have_attribute("data-state", "done")
    expect(reply).to_have_text("[offline] You said: Hello from the browser (turn 1)")
    page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)

    page.reload()

    expect(page.locator("#title")).to_have_text("Browser chat")
    expect(page.locator("#messages li")).to_have_text(
        ["Hello from the browser", "[offline] You said: Hello from the browser (turn 1)"]
    )
    expect(page.locator("#sessions li.current")).to_contain_text("2 messages")
    assert (tmp_path / "chat.png").stat().st_size > 0
    session_id = page.evaluate("location.hash.slice(1)")
    stored = service.call(lambda: service.store.get_session(session_id))
    assert stored is not None
    assert [item.type for item in stored.history] == ["message", "message"]


def test_a_wrong_key_is_refused_on_the_page(shared_service: Service, page: Page) -> None:
    sign_in(page, shared_service, "not-a-key")

    expect(page.locator("#signin-error")).to_have_text("That key is not known here.")
    expect(page.locator("#app")).to_be_hidden()


def test_a_failed_turn_shows_its_error(shared_service: Service, page: Page) -> None:
    sign_in(page, shared_service, ALICE_KEY)
    page.fill("#new-name", "Soon paused")
    page.click("#new-session button")
    expect(page.locator("#title")).to_have_text("Soon paused")
    session_id = page.evaluate("location.hash.slice(1)")
    shared_service.client().patch(f"/sessions/{session_id}", json={"status": "paused"})

    page.fill("#content", "Anyone there?")
    page.press("#content", "Enter")

    failed = page.locator("#messages li.assistant")
    expect(failed).to_have_attribute("data-state", "failed")
    expect(failed).to_have_text(
        f"SESSION_NOT_ACTIVE: session {session_id} is paused; set it active to send messages"
    )
