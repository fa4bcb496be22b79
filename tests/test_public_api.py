"""The public surface: what the README lists is exactly what ``chatruntime`` exports."""

from __future__ import annotations

import re
from pathlib import Path

import chatruntime
import chatruntime.stores

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_api_names() -> set[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Public API", 1)[1]
    block = re.search(r"```text\n(.*?)```", section, re.DOTALL)
    assert block is not None, "README's Public API section has no ```text block"
    return set(block.group(1).split())


def test_readme_lists_exactly_the_exports() -> None:
    assert readme_api_names() == set(chatruntime.__all__)


def test_every_export_exists_and_all_has_no_duplicates() -> None:
    assert len(chatruntime.__all__) == len(set(chatruntime.__all__))
    assert all(hasattr(chatruntime, name) for name in chatruntime.__all__)


def test_stores_module_offers_the_optional_stores() -> None:
    assert {"SqlStore", "RedisStore", "FileStore", "MemoryStore", "open_store"} <= set(
        chatruntime.stores.__all__
    )
    assert chatruntime.stores.SqlStore.__name__ == "SqlStore"
    assert chatruntime.stores.RedisStore.__name__ == "RedisStore"


def test_the_package_is_typed() -> None:
    assert (Path(chatruntime.__file__).parent / "py.typed").is_file()


def test_the_library_logger_has_a_null_handler_and_no_other() -> None:
    import logging

    handlers = logging.getLogger("chatruntime").handlers
    assert [type(handler) for handler in handlers] == [logging.NullHandler]
