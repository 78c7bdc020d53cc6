"""Tasks: benchmark loaders, role prompts, deterministic graders, the code sandbox and baselines."""
