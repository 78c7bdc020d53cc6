"""LLM layer: the OpenAI-compatible chat client, accounting, caching, and real local models."""
