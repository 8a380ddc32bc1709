"""Installing a rule pack: copy its rule files into `<data_dir>/rules/<pack>/`, safely.

The files are staged in a hidden folder beside the packs (the registry skips hidden
folders), then renamed into place, so a reload never sees half a pack. Zip members that
would land outside the folder are ignored, and archives have size limits.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from puffin.detection.loader import RULE_SUFFIXES
from puffin.detection.registry import BUILTIN_PACK, PACKS_FOLDER, is_skipped, pack_files

PACK_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MAX_RULE_FILE_BYTES = 5 * 1024 * 1024
MAX_ARCHIVE_BYTES = 512 * 1024 * 1024


class PackError(ValueError):
    """A pack cannot be installed from this source; the message says why."""


def pack_name(text: str) -> str:
    """Return a valid pack name made from a file or folder name."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")[:64]
    return name or "rules"


def check_pack_name(name: str) -> None:
    """Refuse names that are not a plain folder name, and the built-in pack's name."""
    if not PACK_NAME.match(name) or name == BUILTIN_PACK:
        raise PackError(
            f"pack name {name!r} is not allowed: use lower-case letters, digits, '.', '_' "
            f"and '-' (at most 64), and not {BUILTIN_PACK!r}"
        )


def stage_pack(*, data_dir: Path, name: str, source: Path) -> Path:
    """Copy a pack's rule files (from a folder, a zip or one file) into a hidden folder."""
    check_pack_name(name)
    packs_dir = data_dir / PACKS_FOLDER
    packs_dir.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".incoming-{name}-", dir=packs_dir))
    staged.chmod(0o755)  # rules are not secret; mkdtemp's 0700 would hide them from the server
    try:
        if source.is_dir():
            _copy_folder(source, staged)
        elif zipfile.is_zipfile(source):
            _extract_zip(source, staged)
        elif source.is_file() and source.suffix in RULE_SUFFIXES:
            shutil.copyfile(source, staged / source.name)
        else:
            raise PackError(f"{source} is not a folder, a zip archive or a .yml rule file")
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return staged


def commit_pack(*, data_dir: Path, name: str, staged: Path) -> Path:
    """Put a staged pack in place of the pack of this name; return its folder."""
    check_pack_name(name)
    final = data_dir / PACKS_FOLDER / name
    previous = None
    if final.exists():
        previous = Path(tempfile.mkdtemp(prefix=f".old-{name}-", dir=final.parent))
        final.rename(previous / name)
    staged.rename(final)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    return final


def _copy_folder(source: Path, target: Path) -> None:
    for path in pack_files(source, with_tests=True):
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)


def _extract_zip(source: Path, target: Path) -> None:
    total = 0
    with zipfile.ZipFile(source) as archive:
        for info in archive.infolist():
            relative = _safe_member(info.filename)
            if info.is_dir() or relative is None or not relative.endswith(RULE_SUFFIXES):
                continue
            if is_skipped(relative, with_tests=True):
                continue
            with archive.open(info) as member:
                data = member.read(MAX_RULE_FILE_BYTES + 1)
            if len(data) > MAX_RULE_FILE_BYTES:
                raise PackError(f"{info.filename} in {source} is larger than a rule file can be")
            total += len(data)
            if total > MAX_ARCHIVE_BYTES:
                raise PackError(f"{source} unpacks to more than {MAX_ARCHIVE_BYTES} bytes")
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(data)


def _safe_member(name: str) -> str | None:
    """Return a zip member's name as a relative path, or None if it would leave the folder."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or ":" in name:
        return None
    return path.as_posix()
