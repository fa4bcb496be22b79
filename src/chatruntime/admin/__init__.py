"""Operating a store's data: export, import, copy between stores, check, garbage collection
and schema migration, as a library with progress callbacks (``chatruntime admin`` is its
command line).

Every operation takes initialized stores, reads sessions one at a time (memory does not grow
with the store), reports what it could not do instead of stopping at the first bad record,
and returns a report whose ``ok`` says whether anything went wrong.

Example:
    >>> source, target = open_store("file://data"), open_store(postgres_url)
    >>> await source.initialize(); await target.initialize()
    >>> report = await copy_store(source, target, progress=lambda done, total: ...)
    >>> report.ok, report.verification.source_count
    (True, 10000)
"""

from ._check import CheckReport, check_store
from ._common import DEFAULT_CONCURRENCY, Problem, ProgressCallback, no_progress
from ._copy import CopyReport, Verification, copy_store, verify_copy
from ._export import ExportReport, LineWriter, export_store
from ._gc import GcReport, collect_garbage
from ._import import ImportReport, import_store
from ._listing import walk_sessions
from ._migrate import (
    SQL_DIALECTS,
    latest_schema_version,
    migrate_store,
    migration_sql,
    sql_schema_version,
    sql_script,
)
from ._records import EXPORT_FORMAT, EXPORT_VERSION, RecordError, parse_line, record_line

__all__ = [
    "DEFAULT_CONCURRENCY",
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "SQL_DIALECTS",
    "CheckReport",
    "CopyReport",
    "ExportReport",
    "GcReport",
    "ImportReport",
    "LineWriter",
    "Problem",
    "ProgressCallback",
    "RecordError",
    "Verification",
    "check_store",
    "collect_garbage",
    "copy_store",
    "export_store",
    "import_store",
    "latest_schema_version",
    "migrate_store",
    "migration_sql",
    "no_progress",
    "parse_line",
    "record_line",
    "sql_schema_version",
    "sql_script",
    "verify_copy",
    "walk_sessions",
]
