"""Claude Scope: screen recording + live page inspection → a prompt for a coding agent."""
