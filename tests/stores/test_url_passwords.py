"""Store URLs in messages: the password shown as ``***``, whatever else is wrong with the URL."""

from __future__ import annotations

import pytest

from chatruntime.stores._url import redact_url, scrub, url_password


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("postgresql+asyncpg://app:pw@db/chat", "postgresql+asyncpg://app:***@db/chat"),
        ("rediss://app:pw@cache?ssl_cert_reqs=none", "rediss://app:***@cache?ssl_cert_reqs=none"),
        ("redis://user:@cache/0", "redis://user:***@cache/0"),
        # Malformed ports and hosts, which urlsplit refuses, are shown all the same.
        ("redis://:pw@cache:99999/0", "redis://:***@cache:99999/0"),
        ("redis://:pw@cache:notaport/0", "redis://:***@cache:notaport/0"),
        ("redis://user:pw@[::1/0", "redis://user:***@[::1/0"),
        # The user info ends at the last "@" before the path; the password starts at its ":".
        ("redis://u@x:pw@[::1]:6379/0", "redis://u@x:***@[::1]:6379/0"),
        ("redis://us@er:pw@@cache/0", "redis://us@er:***@cache/0"),
        # Nothing to hide.
        ("sqlite+aiosqlite:///chat.db", "sqlite+aiosqlite:///chat.db"),
        ("redis://user@cache/0", "redis://user@cache/0"),
        ("redis://cache/0?password=x", "redis://cache/0?password=x"),
        ("not a url", "not a url"),
        ("", ""),
    ],
)
def test_redact_url_hides_the_password_and_never_raises(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("redis://:s3cret@cache/0", "s3cret"),
        ("postgresql+asyncpg://app:p%40ss@db/chat", "p%40ss"),
        ("redis://us@er:pw@@cache/0", "pw@"),
        ("redis://user@cache/0", ""),
        ("not a url", ""),
    ],
)
def test_url_password_is_the_password_as_written(url: str, password: str) -> None:
    assert url_password(url) == password


def test_scrub_hides_the_password_as_written_and_decoded() -> None:
    url = "postgresql+asyncpg://app:p%40ss@db/chat"
    text = "login failed for app with p@ss (from p%40ss)"
    assert scrub(text, url) == "login failed for app with *** (from ***)"


def test_scrub_hides_only_whole_occurrences() -> None:
    url = "redis://:pass@cache/0"
    assert scrub("wrong password: pass", url) == "wrong password: ***"


def test_scrub_leaves_text_alone_when_the_url_has_no_password() -> None:
    assert scrub("nothing secret here", "redis://cache/0") == "nothing secret here"
    assert scrub("nothing secret here", "redis://user:@cache/0") == "nothing secret here"
