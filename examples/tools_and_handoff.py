"""Two agents with tools and a handoff between them, with typed history and statistics.

    python examples/tools_and_handoff.py

A "Travel desk" agent can find flights and hand the conversation to a "Weather desk" agent,
which can look up the weather. Both are stored agent specs whose tools come from a
`ToolRegistry`.

This demo runs offline, on the offline model shipped in chatruntime. It is no language model:
it calls a tool when a message says `/tool NAME {json arguments}` (a handoff is a tool named
`transfer_to_<agent>`), and otherwise echoes. With OPENAI_API_KEY set and the provider line
below removed, a real model would decide when to call tools and hand off by itself.
"""

import anyio

from chatruntime import (
    AgentChanged,
    AgentManager,
    Done,
    Error,
    FunctionCallItem,
    FunctionCallResultItem,
    Handoff,
    HandoffItem,
    MemoryStore,
    MessageItem,
    OfflineModelProvider,
    SessionManager,
    TextDelta,
    ToolCall,
    ToolRegistry,
    ToolResult,
)

tools = ToolRegistry()


@tools.tool
def find_flight(city: str) -> str:
    """The next flight to a city."""
    return f"Flight TR-101 to {city} leaves at 09:40 from gate 12"


@tools.tool
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    return f"Sunny in {city}, 24 degrees"


async def main() -> None:
    store = MemoryStore()
    agents = AgentManager(store, tools=tools, model_provider=OfflineModelProvider())
    async with SessionManager(store, agents) as manager:
        weather = await agents.create_agent(
            "Weather desk", "Answer questions about the weather.", tools=["get_weather"]
        )
        travel = await agents.create_agent(
            "Travel desk",
            "Help with flights; hand weather questions to the Weather desk.",
            tools=["find_flight"],
            handoffs=[weather.unwrap().id],
        )
        names = {weather.unwrap().id: "Weather desk", travel.unwrap().id: "Travel desk"}
        trip = (await manager.create_session(travel.unwrap().id, "Trip to Paris")).unwrap()
        forecast = (await manager.create_session(weather.unwrap().id, "Forecast")).unwrap()

        # Every turn starts with its session's agent, so the Weather desk's tool is shown in a
        # session of its own; within the trip, the handoff passes the turn to it.
        turns = [
            (trip.id, '/tool find_flight {"city": "Paris"}'),
            (trip.id, "/tool transfer_to_weather_desk"),
            (forecast.id, '/tool get_weather {"city": "Paris"}'),
        ]
        for session_id, text in turns:
            print(f"you: {text}")
            async for event in manager.stream_message(session_id, text):
                if isinstance(event, ToolCall):
                    print(f"  tool call: {event.name}({event.arguments})")
                elif isinstance(event, ToolResult):
                    print(f"  tool result: {event.output}")
                elif isinstance(event, Handoff):
                    print(f"  handoff: {names[event.from_agent_id]} -> {names[event.to_agent_id]}")
                elif isinstance(event, AgentChanged):
                    print(f"  now answering: {event.name}")
                elif isinstance(event, TextDelta):
                    pass  # the whole reply is printed once it is done
                elif isinstance(event, Done):
                    speaker = names.get(event.message.agent_id or "", "agent")
                    print(f"{speaker}: {event.message.content}")
                elif isinstance(event, Error):
                    print(f"error: {event.error.code}: {event.error.message}")
            print()

        session = (await manager.get_session(trip.id)).unwrap()
        print(f"history of {session.name!r}, as stored (typed items):")
        for item in session.history:
            if isinstance(item, MessageItem):
                print(f"  message    {item.role}: {item.text}")
            elif isinstance(item, FunctionCallItem):
                print(f"  tool call  {item.name} {item.arguments} ({item.call_id})")
            elif isinstance(item, FunctionCallResultItem):
                print(f"  result     {item.output_text} ({item.call_id})")
            elif isinstance(item, HandoffItem):
                print(f"  handoff    {names[item.from_agent_id]} -> {names[item.to_agent_id]}")
        context = session.context
        print(
            f"stats: {context.total_turns} turns, {context.total_messages} messages, "
            f"{context.total_function_calls} tool calls, {context.total_handoffs} handoffs, "
            f"{context.total_tokens} tokens, last agent: {names[context.last_agent_id or '']}"
        )


if __name__ == "__main__":
    anyio.run(main)
