"""`python -m puffin.agent`: the agent's command line.

`run` is parsed by `puffin.agent.launch` (argparse), so the long-running agent never loads
typer and pydantic; every other command goes through typer (`puffin.agent.cli`).
"""

import sys

if sys.argv[1:2] == ["run"]:
    from puffin.agent.launch import main

    sys.exit(main(sys.argv[2:]))

from puffin.agent.cli import app

app(prog_name="puffin-agent")
