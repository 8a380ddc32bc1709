"""`puffin agent`: the agent's own commands, which live with the agent."""

from puffin.agent.cli import app

__all__ = ["app"]
