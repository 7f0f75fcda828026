"""The Claude Code front-end: SessionStart and UserPromptSubmit hooks that bring new mail into an agent's context (docs/agents.md)."""
