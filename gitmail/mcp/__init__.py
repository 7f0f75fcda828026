"""The MCP front-end: ``gitmail mcp`` serves the library API to agents over stdio (docs/agents.md)."""
