"""State modules (after agentscope): objects whose registered attributes, and nested modules,
are saved with a session by ``SessionManager.save_session_state`` and loaded back by
``SessionManager.load_session_state``."""

from ._module import FromJson, StateModule, ToJson

__all__ = ["FromJson", "StateModule", "ToJson"]
