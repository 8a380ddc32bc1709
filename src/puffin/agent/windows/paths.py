"""Windows paths for file integrity monitoring: the defaults, and `%NAME%` expansion.

The defaults cover what attackers change to persist or to blind an endpoint, kept small
enough to hash every scan: the hosts file folder, scheduled task definitions, the
all-users and per-user Startup folders, PowerShell's own folder (profiles), `win.ini` and
`system.ini`, and the System32 programs most often replaced or hijacked (accessibility
tools used as logon backdoors, `cmd`, `net`, `reg`, `sc`, `schtasks`, script hosts, …).
"""

from __future__ import annotations

import glob
import ntpath
import re
from collections.abc import Mapping

VARIABLE = re.compile(r"%([A-Za-z_][A-Za-z0-9_()]*)%")
SYSTEM32_PROGRAMS = (
    "at.exe", "atbroker.exe", "bitsadmin.exe", "certutil.exe", "cmd.exe", "cscript.exe",
    "displayswitch.exe", "lsass.exe", "magnify.exe", "mshta.exe", "narrator.exe", "net.exe",
    "net1.exe", "netsh.exe", "osk.exe", "reg.exe", "regsvr32.exe", "rundll32.exe", "sc.exe",
    "schtasks.exe", "sethc.exe", "svchost.exe", "taskmgr.exe", "userinit.exe", "utilman.exe",
    "winlogon.exe", "wscript.exe",
)  # fmt: skip
DEFAULT_TEMPLATES = (
    r"%SystemRoot%\System32\drivers\etc",
    r"%SystemRoot%\System32\Tasks",
    r"%SystemRoot%\System32\WindowsPowerShell\v1.0",
    r"%SystemRoot%\win.ini",
    r"%SystemRoot%\system.ini",
    r"%ProgramData%\Microsoft\Windows\Start Menu\Programs\StartUp",
    *(rf"%SystemRoot%\System32\{name}" for name in SYSTEM32_PROGRAMS),
)
USER_STARTUP = (
    r"%SystemDrive%\Users\*\AppData\Roaming"
    r"\Microsoft\Windows\Start Menu\Programs\Startup"
)
FALLBACKS = {"SYSTEMROOT": r"C:\Windows", "PROGRAMDATA": r"C:\ProgramData", "SYSTEMDRIVE": "C:"}


def expand(path: str, environ: Mapping[str, str]) -> str:
    """Replace `%NAME%` with the environment's value (names are case-insensitive).

    A name the environment lacks is left as written, as Windows itself does.
    """
    values = {key.upper(): value for key, value in environ.items()}
    for key, value in FALLBACKS.items():
        values.setdefault(key, value)
    return VARIABLE.sub(lambda m: values.get(m.group(1).upper(), m.group(0)), path)


def default_fim_paths(
    environ: Mapping[str, str], *, user_folders: list[str] | None = None
) -> tuple[str, ...]:
    """Return the default FIM paths for this machine, per-user Startup folders included.

    `user_folders` are the per-user Startup folders that exist (found with a glob when not
    given); users who first log on later are added when the configuration is next applied.
    """
    paths = [expand(template, environ) for template in DEFAULT_TEMPLATES]
    if user_folders is None:
        user_folders = sorted(glob.glob(expand(USER_STARTUP, environ)))
    paths += [ntpath.normpath(folder) for folder in user_folders]
    return tuple(paths)
