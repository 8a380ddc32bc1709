"""`python -m puffin.agent`: the agent's command line."""

from puffin.agent.cli import app

app(prog_name="puffin-agent")
