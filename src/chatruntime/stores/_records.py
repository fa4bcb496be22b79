"""Reading stored records back into models, shared by the stores that keep JSON per record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ..models import AgentSpec, CorruptDataError, describe_validation_error

LISTED_PROBLEMS = 3
"""How many problems of an invalid record a reason names before saying how many more."""


def describe_invalid(error: ValidationError) -> str:
    """The reason a stored record failed validation, naming at most a few fields."""
    return describe_validation_error(error, limit=LISTED_PROBLEMS, root="record")


def parse_agent(agent_id: str, raw: str | bytes | Mapping[str, Any], location: str) -> AgentSpec:
    """The agent spec stored for ``agent_id`` at ``location`` (a key, a table row).

    Raises:
        CorruptDataError: The record is invalid, or holds another agent's id.
    """
    try:
        if isinstance(raw, str | bytes):
            spec = AgentSpec.model_validate_json(raw)
        else:
            spec = AgentSpec.model_validate(raw)
    except ValidationError as error:
        reason = f"invalid agent: {describe_invalid(error)}"
    else:
        if spec.id == agent_id:
            return spec
        reason = f"the record's id is {spec.id}"
    raise CorruptDataError(
        f"agent {agent_id} cannot be read: {reason}",
        agent_id=agent_id,
        location=location,
        reason=reason,
    )
