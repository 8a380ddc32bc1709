"""`puffin rules`: import packs; list, lint and test rules; switch them per organisation."""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from puffin.cli.common import ConfigOption, DataDirOption, console, errors, fail, load
from puffin.core.settings import Settings
from puffin.detection.engine.compiler import LEVELS
from puffin.detection.placeholders import PlaceholderError, Placeholders, load_placeholders
from puffin.detection.registry import (
    CACHE_FILE,
    Pack,
    RuleEntry,
    RuleRegistry,
    RuleSetSnapshot,
    build_snapshot,
    builtin_pack_path,
    pack_files,
)
from puffin.detection.rule_catalogue import RuleSettingsUpdate
from puffin.detection.rule_packs import PackError, commit_pack, pack_name, stage_pack

app = typer.Typer(no_args_is_help=True)

MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024
DOWNLOAD_TIMEOUT_SECONDS = 60.0


@app.command("import")
def import_pack(
    source: Annotated[
        str, typer.Argument(help="A SigmaHQ release zip, a folder, a rule file, or an http(s) URL.")
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="Pack name (default: from the source's name).")
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Copy a rule pack into the data directory (replacing a pack of that name) and load it."""
    settings = load(config, data_dir)
    with _local_copy(source) as path:
        pack = name if name is not None else pack_name(_stem(source))
        try:
            staged = stage_pack(data_dir=settings.data_dir, name=pack, source=path)
        except PackError as error:
            fail(str(error), 2)
        except (OSError, zipfile.BadZipFile) as error:
            fail(f"cannot read {source}: {error}")
    final = settings.data_dir / "rules" / pack
    try:
        snapshot = _load(
            [Pack(pack, staged, tuple(pack_files(staged)))],
            settings.data_dir,
            settings.detection.placeholders,
        )
        if not snapshot.entries:
            _print_problems(snapshot, final)
            fail(f"no rule could be loaded from {source}; pack {pack!r} was left as it was")
        commit_pack(data_dir=settings.data_dir, name=pack, staged=staged)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    _print_summary(snapshot, final)


@app.command("list")
def list_rules(
    pack: Annotated[str | None, typer.Option("--pack", help="Only this pack.")] = None,
    level: Annotated[str | None, typer.Option("--level", help="Only this level.")] = None,
    text: Annotated[str | None, typer.Option("--text", help="Id, title or tag contains.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List the rules the server loads: the built-in pack and the imported packs."""
    if level is not None and level not in LEVELS:
        fail(f"--level must be one of {', '.join(LEVELS)}", 2)
    settings = load(config, data_dir)
    snapshot = _server_snapshot(settings)
    table = Table("title", "level", "status", "logsource", "pack")
    table.add_column("id", overflow="fold", min_width=36)
    shown = [e for e in snapshot.entries.values() if _wanted(e, pack, level, text)]
    for entry in shown:
        table.add_row(
            escape(entry.title),
            entry.level,
            entry.status,
            escape(entry.logsource or entry.kind),
            entry.pack,
            entry.id,
        )
    console.print(table)
    warned = sum(1 for entry in shown if entry.warnings)
    console.print(
        f"{len(shown)} of {len(snapshot.entries)} rules; {len(snapshot.problems)} broken; "
        f"{warned} with warnings (`puffin rules lint` shows them)"
    )


@app.command("enable")
def enable(
    rule_id: Annotated[str, typer.Argument(help="The rule's id (as `puffin rules list` shows).")],
    org: Annotated[str, typer.Option("--org", help="The organisation's slug.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Enable a rule in one organisation (a running server applies it to its next events)."""
    _switch(rule_id, org, RuleSettingsUpdate(enabled=True), config, data_dir)


@app.command("disable")
def disable(
    rule_id: Annotated[str, typer.Argument(help="The rule's id (as `puffin rules list` shows).")],
    org: Annotated[str, typer.Option("--org", help="The organisation's slug.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Disable a rule in one organisation: its matches raise no alerts there."""
    _switch(rule_id, org, RuleSettingsUpdate(enabled=False), config, data_dir)


@app.command("stage")
def stage(
    rule_id: Annotated[str, typer.Argument(help="The rule's id (as `puffin rules list` shows).")],
    org: Annotated[str, typer.Option("--org", help="The organisation's slug.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Stage a rule in one organisation: its alerts are stored for review, not forwarded."""
    _switch(rule_id, org, RuleSettingsUpdate(staged=True), config, data_dir)


@app.command("promote")
def promote(
    rule_id: Annotated[str, typer.Argument(help="The rule's id (as `puffin rules list` shows).")],
    org: Annotated[str, typer.Option("--org", help="The organisation's slug.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Promote a staged rule in one organisation: its new alerts are forwarded again."""
    _switch(rule_id, org, RuleSettingsUpdate(staged=False), config, data_dir)


def _switch(
    rule_id: str,
    org: str,
    change: RuleSettingsUpdate,
    config: Path | None,
    data_dir: Path | None,
) -> None:
    """Change one rule's switches in one organisation, as the CLI (audited)."""
    from puffin.cli.common import cli_session, organisation_id_of, state_for
    from puffin.detection import rule_catalogue

    settings = load(config, data_dir)
    snapshot = _server_snapshot(settings)
    state = state_for(settings)
    try:
        with cli_session(state) as session:
            switch = rule_catalogue.update_settings(
                session=session,
                snapshot=snapshot,
                organisation_id=organisation_id_of(session, org),
                rule_id=rule_id,
                settings_in=change,
            )
    finally:
        state.engine.dispose()
    title = snapshot.entries[rule_id].title
    state_text = "enabled" if switch.enabled else "disabled"
    staged = ", staged (alerts stored, not forwarded)" if switch.staged else ""
    _line(f"rule {rule_id} ({title}) is {state_text}{staged} in organisation {org}")


@app.command("lint")
def lint(
    paths: Annotated[list[Path], typer.Argument(help="Rule files, folders or zip archives.")],
    placeholders: Annotated[
        Path | None,
        typer.Option(
            "--placeholders",
            help="Values of %name% placeholders: YAML names to lists, or a puffin.toml.",
        ),
    ] = None,
) -> None:
    """Load rules and report broken ones, unmapped logsources, warnings and duplicate ids."""
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        fail(f"no such file or folder: {', '.join(missing)}", 2)
    values: Placeholders = {}
    if placeholders is not None:
        try:
            values = load_placeholders(placeholders)
        except PlaceholderError as error:
            fail(escape(str(error)), 2)
    packs = [Pack(path.name, path, tuple(pack_files(path))) for path in paths]
    snapshot = _load(packs, None, values)
    for problem in snapshot.problems:
        _line(f"{problem.path}:{problem.line}: error: {problem.reason}")
    warnings = 0
    for entry in snapshot.entries.values():
        for message in _warnings(entry, snapshot):
            _line(f"{entry.path}:{entry.line}: warning: {message}")
            warnings += 1
    broken = len(snapshot.problems)
    console.print(f"{len(snapshot.entries)} rules loaded, {broken} errors, {warnings} warnings")
    if broken:
        raise typer.Exit(1)


@app.command("test")
def run_rule_tests(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Rule files or folders with tests beside them (default: built-in)."),
    ] = None,
) -> None:
    """Run the positive and negative test cases kept beside the rules."""
    try:
        from puffin.detection.rule_tests import run_tests
    except ImportError as error:
        fail(f"the rule test runner is not installed: {error}", 2)
    targets = list(paths or [])
    if not targets:
        builtin = builtin_pack_path()
        if builtin is None:
            fail("the built-in rule pack is not installed; give rule paths", 2)
        targets = [builtin]
    missing = [str(path) for path in targets if not path.exists()]
    if missing:
        fail(f"no such file or folder: {', '.join(missing)}", 2)
    report = run_tests(targets)
    _print_tests(report, targets)
    if not report.passed:
        raise typer.Exit(1)


# --- helpers ------------------------------------------------------------------------------


@contextmanager
def _local_copy(source: str) -> Iterator[Path]:
    """Yield a local path for the source, downloading an http(s) URL to a temporary file."""
    scheme = urlparse(source).scheme.lower()
    if scheme in ("http", "https"):
        with tempfile.TemporaryDirectory(prefix="puffin-rules-") as folder:
            yield _download(source, Path(folder))
        return
    if "://" in source:
        fail(f"{source}: only http:// and https:// addresses, or local paths, can be imported", 2)
    path = Path(source).expanduser()
    if not path.exists():
        fail(f"no such file or folder: {source}", 2)
    yield path


def _download(url: str, folder: Path) -> Path:
    import httpx

    target = folder / (pack_name(_stem(url)) + _suffix(url))
    received = 0
    try:
        with httpx.stream(
            "GET", url, follow_redirects=True, timeout=DOWNLOAD_TIMEOUT_SECONDS
        ) as response:
            response.raise_for_status()
            with target.open("wb") as handle:
                for chunk in response.iter_bytes():
                    received += len(chunk)
                    if received > MAX_DOWNLOAD_BYTES:
                        fail(f"{url} is larger than {MAX_DOWNLOAD_BYTES} bytes")
                    handle.write(chunk)
    except httpx.HTTPError as error:
        fail(f"cannot download {url}: {error}")
    errors.print(f"downloaded {received} bytes from {escape(url)}", highlight=False)
    return target


def _stem(source: str) -> str:
    """Return the name a pack gets by default: the source's last path part, no suffix."""
    path = urlparse(source).path if "://" in source else source
    name = Path(path.rstrip("/\\")).name or "rules"
    for suffix in (".zip", ".yml", ".yaml"):
        name = name.removesuffix(suffix)
    return name


def _suffix(url: str) -> str:
    suffix = Path(urlparse(url).path).suffix.lower()
    return suffix if suffix in (".zip", ".yml", ".yaml") else ".zip"


def _server_snapshot(settings: Settings) -> RuleSetSnapshot:
    """Load the packs a server with these settings loads, with its placeholders."""
    registry = RuleRegistry(settings.data_dir)
    return _load(registry.packs(), settings.data_dir, settings.detection.placeholders)


def _load(
    packs: Sequence[Pack], data_dir: Path | None, placeholders: Placeholders
) -> RuleSetSnapshot:
    """Load packs with a progress bar, through the compile cache when there is a data dir."""
    from puffin.detection.loader import RuleCache

    cache = RuleCache(data_dir.joinpath(*CACHE_FILE)) if data_dir is not None else None
    columns = (TextColumn("loading rules"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=errors, transient=True) as progress:
            task = progress.add_task("rules", total=None)

            def step(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            return build_snapshot(packs, cache, placeholders, step)
    finally:
        if cache is not None:
            cache.close()


def _line(text: str) -> None:
    """Print one `file:line: message` line as it is: no markup, no wrapping."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _print_problems(snapshot: RuleSetSnapshot, final: Path) -> None:
    for problem in snapshot.problems:
        _line(f"{final / problem.file}:{problem.line}: {problem.reason}")


def _print_summary(snapshot: RuleSetSnapshot, final: Path) -> None:
    unmapped = [e for e in snapshot.entries.values() if e.id in snapshot.ruleset.unmapped]
    console.print(
        f"[bold green]pack {escape(final.name)}:[/] {len(snapshot.entries)} rules loaded, "
        f"{len(snapshot.problems)} broken, {len(unmapped)} with an unmapped logsource "
        f"(they load but cannot match any event yet)",
        highlight=False,
        soft_wrap=True,
    )
    _print_problems(snapshot, final)
    if unmapped:
        parts = sorted({p for e in unmapped for p in snapshot.ruleset.unmapped[e.id]})
        _line(f"unmapped logsource parts: {', '.join(parts)}")
    console.print(
        f"installed in {escape(str(final))}; a running server loads it when a site admin "
        "reloads the rules (Rules page, or POST /api/v1/rules/reload) or when it restarts",
        highlight=False,
        soft_wrap=True,
    )


def _warnings(entry: RuleEntry, snapshot: RuleSetSnapshot) -> list[str]:
    found = [f"{entry.id}: {warning}" for warning in entry.warnings]
    unmapped = snapshot.ruleset.unmapped.get(entry.id)
    if unmapped:
        found.append(
            f"{entry.id}: logsource {entry.logsource} is not mapped ({', '.join(unmapped)}): "
            "the rule cannot match any event"
        )
    return found


def _wanted(entry: RuleEntry, pack: str | None, level: str | None, text: str | None) -> bool:
    if (pack and entry.pack != pack) or (level and entry.level != level):
        return False
    if not text:
        return True
    needle = text.lower()
    fields = (entry.id, entry.title, entry.logsource, entry.file, *entry.tags)
    return any(needle in value.lower() for value in fields)


def _print_tests(report: Any, roots: Sequence[Path]) -> None:
    table = Table("result", "title", "cases", "file")
    for result in report.results:
        colour = {"passed": "green", "failed": "red"}.get(result.status, "yellow")
        table.add_row(
            f"[{colour}]{result.status}[/]",
            escape(result.title),
            f"{result.positives}+ / {result.negatives}-",
            escape(_shown(result.file, roots)),
        )
    console.print(table)
    for result in report.failed:
        console.print(f"[bold red]FAILED[/] {escape(result.title)} ({result.rule_id})")
        for failure in result.failures:
            _line(f"  {result.file}: {failure}")
    for problem in report.problems:
        _line(f"{problem}")
    passed = sum(1 for result in report.results if result.status == "passed")
    console.print(
        f"{passed} passed, {len(report.failed)} failed, {len(report.untested)} untested, "
        f"{len(report.problems)} unreadable",
        highlight=False,
    )


def _shown(file: str, roots: Sequence[Path]) -> str:
    """Return a file's path relative to the folder it was found in, for a narrow table."""
    path = Path(file)
    for root in roots:
        if root.is_dir() and path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    return file
