"""chatruntime: reliable multi-user chat sessions for LLM agents on the OpenAI Agents SDK."""
