"""An MCP server over stdio (``python -m function.mcp``): a coding agent fetches sessions itself.

``sources`` reads a running service (``SCOPE_API_URL``, ``SCOPE_API_KEY``) or the local store;
``server`` declares the tools on the official ``mcp`` SDK.
"""
