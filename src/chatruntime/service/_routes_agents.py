"""Agents: create, list, read, change and delete agent specs. Admin keys only."""

from typing import Any

from fastapi import APIRouter, Response

from ..models import AgentSpec
from ._deps import Admin, Context
from ._errors import unwrap
from ._openapi import ADMIN_ERRORS, ERRORS
from ._schemas import AgentCreate, AgentUpdate

router = APIRouter(prefix="/agents", tags=["agents"], responses={**ERRORS, **ADMIN_ERRORS})


@router.post("", status_code=201)
async def create_agent(body: AgentCreate, context: Context, _: Admin) -> AgentSpec:
    """Store a new agent spec."""
    return unwrap(
        await context.agents.create_agent(
            body.name,
            body.instructions,
            model=body.model,
            model_settings=body.model_settings,
            tools=body.tools,
            handoffs=body.handoffs,
        )
    )


@router.get("")
async def list_agents(context: Context, _: Admin) -> list[AgentSpec]:
    """Every stored agent spec, oldest first."""
    return unwrap(await context.agents.list_agents())


@router.get("/{agent_id}")
async def get_agent(agent_id: str, context: Context, _: Admin) -> AgentSpec:
    """One agent spec."""
    return unwrap(await context.agents.get_agent(agent_id))


@router.patch("/{agent_id}")
async def update_agent(agent_id: str, body: AgentUpdate, context: Context, _: Admin) -> AgentSpec:
    """Change an agent spec; fields left out keep their value. The next turn uses it."""
    changes: dict[str, Any] = {name: getattr(body, name) for name in body.model_fields_set}
    return unwrap(await context.agents.update_agent(agent_id, **changes))


@router.delete("/{agent_id}", status_code=204)
async def delete_agent(agent_id: str, context: Context, _: Admin) -> Response:
    """Delete an agent spec. Its sessions stay, but refuse turns (``AGENT_NOT_FOUND``)."""
    unwrap(await context.agents.delete_agent(agent_id))
    return Response(status_code=204)
