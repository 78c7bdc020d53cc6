"""The offline emulated LLM pool: an OpenAI-compatible server with profile-driven behaviour."""
