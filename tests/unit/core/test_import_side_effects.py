"""Importing Puffin does nothing: no file written, no directory made, no database opened,
no connection, no process. Only `create_app(settings)` touches the data directory.

The check runs in a fresh interpreter in an empty working directory, with an audit hook
(PEP 578) that records every such operation, so an import-time side effect anywhere in the
package or in what it imports at module level fails it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROBE = textwrap.dedent(
    """
    import json, os, sys

    WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    WATCHED = {
        "sqlite3.connect", "socket.connect", "socket.bind", "os.mkdir", "os.rename",
        "os.remove", "os.symlink", "subprocess.Popen", "os.system", "os.exec", "os.fork",
    }
    seen = []

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & WRITES)
            if writing and isinstance(path, (str, bytes, os.PathLike)):
                seen.append(["open", os.fsdecode(path)])
        elif event == "socket.bind" and args[1][1] == 0:
            pass  # a capability probe: urllib3 binds ::1 port 0 to learn if IPv6 works
        elif event in WATCHED:
            seen.append([event, repr(args)[:200]])

    sys.addaudithook(hook)
    import puffin.app, puffin.misp_fixer_app, puffin.cli.main  # noqa: E401
    on_import = list(seen)

    from puffin.app import create_app
    from puffin.core.settings import Settings

    app = create_app(Settings(data_dir="data", environment="test", tls=False))
    print(json.dumps({"on_import": on_import, "on_create": seen[len(on_import):]}))
    """
)


def _clean_environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUFFIN_")}
    env.update(HOME=str(home), PYTHONDONTWRITEBYTECODE="1", TMPDIR=str(home))
    return env


@pytest.mark.slow
def test_importing_puffin_has_no_side_effects_until_create_app(tmp_path):
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=cwd,
        env=_clean_environment(home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["on_import"] == []
    assert list(home.iterdir()) == []
    # create_app is where work starts: it makes the data directory, and only that.
    assert report["on_create"] != []
    assert [p.name for p in cwd.iterdir()] == ["data"]
