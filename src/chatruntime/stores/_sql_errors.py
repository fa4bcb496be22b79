"""How ``SqlStore`` names its database and turns driver failures into ``StorageError``.

Messages name the database (never its password), say what the store was doing, and keep
the driver's own words without SQLAlchemy's copy of the statement and its parameters (which
would leak user content into logs).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import exc as sa_errors
from sqlalchemy.engine import URL, make_url

from ..models import ChatRuntimeError, StorageError
from ._url import scrub


@dataclass
class ErrorMapper:
    """Maps the failures of one store's database to :class:`StorageError`.

    Attributes:
        where: How messages name the database (``SQLite database /srv/chat.db``).
        url: The database URL as text, password included: the password is replaced by
            ``***`` wherever a message would show it (see :func:`url_text`).
        connect_timeout: Seconds a PostgreSQL connection may take, for the message when it
            runs out.
        pool: The pool's settings, for the message when no connection became free in time.
        driver_errors: The driver's own exception classes, raised outside SQLAlchemy's
            wrapping (connection listeners, statements run on the raw SQLite connection).
    """

    where: str
    url: str = field(default="", repr=False)
    connect_timeout: float = 5.0
    pool: str = ""
    driver_errors: tuple[type[Exception], ...] = field(default=(sqlite3.Error,))

    @contextmanager
    def mapped(self, doing: str, *, connecting: bool = False) -> Iterator[None]:
        """Raise :class:`StorageError` for a database failure in the ``with`` body.

        Args:
            doing: What the body does, as in "failed while <doing>".
            connecting: The body opens the connection: the message then says that it
                cannot connect, and a timeout is the connect timeout.
        """
        try:
            yield
        except ChatRuntimeError:
            raise
        except Exception as error:
            raise self.error(error, doing, connecting=connecting) from error

    def error(self, error: Exception, doing: str, *, connecting: bool = False) -> Exception:
        """The :class:`StorageError` for ``error``; ``error`` itself if it is no database
        failure (a bug, which must not be disguised)."""
        if isinstance(error, ChatRuntimeError):
            return error
        if not isinstance(error, (sa_errors.SQLAlchemyError, OSError, *self.driver_errors)):
            return error
        if isinstance(error, sa_errors.TimeoutError):
            # The pool's wait for a free connection ran out; the pool said so in its own words.
            return StorageError(
                f"{self.where} failed while {doing}: no database connection became free in "
                f"time ({self.pool}); allow more connections or a longer pool_timeout",
                where=self.where,
            )
        reason = self.scrub(_reason(error, self.connect_timeout if connecting else None))
        if _is_auth_failure(error):
            reason += "; check the user name and password"
        elif "database is locked" in reason:
            reason += " (another process kept its write lock past the busy timeout)"
        message = (
            f"cannot connect to {self.where}: {reason}"
            if connecting
            else f"{self.where} failed while {doing}: {reason}"
        )
        return StorageError(message, where=self.where)

    def scrub(self, text: str) -> str:
        """``text`` with the URL's password replaced by ``***``."""
        return scrub(text, self.url)


def is_memory(url: URL) -> bool:
    """Whether a SQLite URL names an in-memory database."""
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def describe(url: URL) -> str:
    """How messages name the database of ``url`` (without its password)."""
    if url.get_backend_name() == "sqlite":
        return "in-memory SQLite database" if is_memory(url) else f"SQLite database {url.database}"
    try:
        port = str(url.port or 5432)
    except ValueError:
        port = "?"
    where = f"PostgreSQL at {url.host or 'localhost'}:{port}, database {url.database!r}"
    return f"{where} as user {url.username!r}" if url.username else where


def describe_unparsed(url: str | URL | None) -> str:
    """Like :func:`describe`, for a URL that may not parse."""
    if isinstance(url, URL):
        return describe(url)
    try:
        return describe(make_url(url or ""))
    except (sa_errors.ArgumentError, ValueError):
        return "SQL database (malformed URL)"


def url_text(url: str | URL | None) -> str:
    """``url`` as text with its password, for :attr:`ErrorMapper.url` (a ``URL`` object's
    own ``str()`` hides the password, which then could not be scrubbed)."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=False)
    return url or ""


def _reason(error: BaseException, connect_timeout: float | None) -> str:
    if isinstance(error, sa_errors.DBAPIError) and error.orig is not None:
        # The driver's own words, without SQLAlchemy's copy of the statement and parameters.
        return str(error.orig) or type(error.orig).__name__
    if isinstance(error, TimeoutError):
        if connect_timeout is None:
            return "timed out waiting for the database"
        return f"no answer within {connect_timeout:g}s"
    return str(error) or type(error).__name__


def _is_auth_failure(error: BaseException) -> bool:
    # SQLSTATE class 28: invalid authorization specification (wrong user or password).
    orig = getattr(error, "orig", None)
    return str(getattr(orig, "sqlstate", "") or "").startswith("28")
