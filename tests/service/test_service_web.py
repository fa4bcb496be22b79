"""The chat page at ``/``, driven in a real headless Chromium (Debian's ``chromium``, which
``make services`` installs): sign in, create a session, chat with the reply streaming in, find
the conversation again after a reload, save a checkpoint, and restore or fork from it.
Screenshots are kept in the test's tmp dir."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

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


def chat(page: Page, content: str, turn: int) -> None:
    """Send ``content`` from the composer and wait for the whole reply (turn ``turn``)."""
    page.fill("#content", content)
    page.press("#content", "Enter")
    reply = page.locator("#messages li.assistant").last
    expect(reply).to_have_attribute("data-state", "done")
    expect(reply).to_have_text(f"[offline] You said: {content} (turn {turn})")


def stored_texts(service: Service, session_id: str) -> list[str]:
    session = service.call(lambda: service.store.get_session(session_id))
    assert session is not None
    return [str(getattr(item, "text", "")) for item in session.history]


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


def test_a_person_chats_reloads_saves_a_checkpoint_and_forks_from_it(
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

    # A checkpoint after the first turn, then a second turn.
    page.fill("#checkpoint-label", "After hello")
    page.click("#checkpoint")
    checkpoint = page.locator("#checkpoints li")
    expect(checkpoint).to_have_count(1)
    expect(checkpoint.locator(".label")).to_have_text("After hello")
    expect(checkpoint.locator("small")).to_contain_text("2 messages")
    chat(page, "Second message", 2)
    expect(page.locator("#messages li")).to_have_count(4)

    # Forking waits on the service: the page says so until the fork is there.
    held: list[Route] = []
    page.route("**/sessions/*/fork", lambda route: held.append(route))
    checkpoint.locator("button.fork").click()
    expect(page.locator("#progress")).to_be_visible()
    expect(page.locator("#progress-text")).to_have_text("Forking a new session…")
    expect(checkpoint.locator("button.restore")).to_be_disabled()
    while not held:
        page.wait_for_timeout(10)
    page.screenshot(path=str(tmp_path / "forking.png"), full_page=True)
    held[0].continue_()

    expect(page.locator("#title")).to_have_text("Browser chat (fork)")
    expect(page.locator("#progress")).to_be_hidden()
    expect(page.locator("#messages li")).to_have_text(
        ["Hello from the browser", "[offline] You said: Hello from the browser (turn 1)"]
    )
    expect(page.locator("#sessions li.current")).to_contain_text("Browser chat (fork)")
    expect(page.locator("#sessions li")).to_have_count(2)
    expect(page.locator("#checkpoints li")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "fork.png"), full_page=True)
    fork_id = page.evaluate("location.hash.slice(1)")
    assert fork_id != session_id
    assert stored_texts(service, fork_id) == [
        "Hello from the browser",
        "[offline] You said: Hello from the browser (turn 1)",
    ]
    assert len(stored_texts(service, session_id)) == 4
    assert (tmp_path / "forking.png").stat().st_size > 0
    assert (tmp_path / "fork.png").stat().st_size > 0

    # The fork goes on on its own.
    chat(page, "Only in the fork", 2)
    assert len(stored_texts(service, fork_id)) == 4
    assert stored_texts(service, session_id)[2] == "Second message"


def test_a_person_restores_a_checkpoint_and_can_undo_it(
    shared_service: Service, page: Page
) -> None:
    sign_in(page, shared_service, ALICE_KEY)
    page.fill("#new-name", "Rewound")
    page.click("#new-session button")
    expect(page.locator("#title")).to_have_text("Rewound")
    expect(page.locator("#no-checkpoints")).to_have_text(
        "None yet: save one to come back to this point later."
    )
    chat(page, "Keep this", 1)
    page.click("#checkpoint")
    expect(page.locator("#checkpoints li .label")).to_have_text([re.compile("^Checkpoint at ")])
    chat(page, "Drop this", 2)

    page.locator("#checkpoints li button.restore").click()

    expect(page.locator("#messages li")).to_have_text(
        ["Keep this", "[offline] You said: Keep this (turn 1)"]
    )
    undo = page.locator("#checkpoints li").first
    expect(page.locator("#checkpoints li")).to_have_count(2)
    expect(undo).to_have_attribute("data-kind", "restore")
    expect(undo.locator(".label")).to_have_text("before restore")
    expect(undo.locator("small")).to_contain_text("4 messages · ")
    expect(undo.locator("small")).to_contain_text("undo point")

    undo.locator("button.restore").click()

    expect(page.locator("#messages li")).to_have_count(4)
    expect(page.locator("#messages li").last).to_have_text("[offline] You said: Drop this (turn 2)")
    expect(page.locator("#checkpoints li")).to_have_count(3)


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
