"""Sessions: the manager, its per-session locks, and turns."""

from ._manager import InitializeReport, SessionManager

__all__ = ["InitializeReport", "SessionManager"]
