"""What `puffin hunt` and `puffin logtest` do: run rules over files, or over typed lines.

No Typer here: `puffin hunt` is often run over a folder of logs and its whole run counts,
so `main` parses a plain hunt command line itself (`parse_hunt_argv`) and Typer, with the
pydantic it imports to convert arguments (a tenth of a second), is loaded only for help,
errors and the other commands. `puffin.cli.hunt` declares both commands to Typer, with
the same options (a test compares them), and calls the functions below. Errors end the
command with `SystemExit` and the exit code, which Typer passes through.
"""

from __future__ import annotations

import gc
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from puffin.detection.engine.ruleset import RuleErrors
from puffin.detection.loader import LoadedRules, RuleCache, compile_correlations, load_rules
from puffin.detection.placeholders import PlaceholderError, Placeholders, load_placeholders

LEVEL_STYLES = {
    "critical": "bold red",
    "high": "red",
    "medium": "yellow",
    "low": "cyan",
    "informational": "dim",
}


def _cache_path() -> Path:
    base = os.environ.get("PUFFIN_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return (root if os.environ.get("PUFFIN_CACHE_DIR") else root / "puffin") / "rules.sqlite"


def placeholders_for_cli(path: Path | None, console: Console) -> Placeholders:
    """Read the `--placeholders` file, or exit 2 with the reason."""
    if path is None:
        return {}
    try:
        return load_placeholders(path)
    except PlaceholderError as error:
        console.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
        raise SystemExit(2) from error


def load_for_cli(
    rules: list[Path],
    console: Console,
    *,
    use_cache: bool = True,
    placeholders: Placeholders | None = None,
    jobs: int = 1,
) -> LoadedRules:
    """Load rule paths (the built-in pack when none); print each broken rule and warning.

    Rules missing from the compile cache are parsed in `jobs` processes.
    """
    from puffin.detection.rules import builtin_pack_path

    paths = rules or [builtin_pack_path()]
    cache = RuleCache(_cache_path()) if use_cache else None
    try:
        loaded = load_rules(
            paths, cache=cache, placeholders=placeholders, jobs=jobs, matcher_code=True
        )
    except FileNotFoundError as error:
        console.print(f"[red]error:[/red] {error}")
        raise SystemExit(2) from error
    finally:
        if cache:
            cache.close()
    for problem in loaded.problems:
        console.print(f"[yellow]skipped rule[/yellow] {escape(str(problem))}", soft_wrap=True)
    for rule in loaded.rules:
        for warning in rule.warnings:
            hint = " (give them with --placeholders FILE)" if "placeholder" in warning else ""
            console.print(
                f"[yellow]warning:[/yellow] {escape(rule.path)}: {escape(rule.title)} "
                f"({rule.id}): {escape(warning)}{hint}",
                soft_wrap=True,
            )
    if not loaded.rules:
        console.print("[red]error:[/red] no rule could be loaded; check the --rules paths")
        raise SystemExit(1)
    return loaded


@dataclass(frozen=True)
class HuntOptions:
    """A `puffin hunt` command line, parsed."""

    paths: tuple[str, ...]  # as given: find_sources makes them paths
    rules: tuple[Path, ...] = ()
    jsonl: Path | None = None
    jobs: int = 0
    no_cache: bool = False
    placeholders: Path | None = None


# The options of `puffin hunt`, for parse_hunt_argv: name -> (attribute, takes a value).
# `puffin.cli.hunt` declares the same to Typer; a test checks that they agree.
HUNT_OPTIONS: dict[str, tuple[str, bool]] = {
    "--rules": ("rules", True),
    "-r": ("rules", True),
    "--jsonl": ("jsonl", True),
    "--jobs": ("jobs", True),
    "-j": ("jobs", True),
    "--no-cache": ("no_cache", False),
    "--placeholders": ("placeholders", True),
}


def parse_hunt_argv(argv: Sequence[str]) -> HuntOptions | None:
    """Parse the arguments after `puffin hunt` as Typer would, or return None.

    None means "let Typer do it": help, an unknown option, a missing or odd value, no path.
    Only plain, valid command lines are parsed here, so Typer still gives every message.
    """
    paths: list[str] = []
    rules: list[Path] = []
    values: dict[str, Any] = {}
    args = iter(argv)
    for arg in args:
        if arg == "--":
            paths.extend(args)
            break
        if not arg.startswith("-") or arg == "-":
            paths.append(arg)
            continue
        name, equals, value = arg.partition("=") if arg.startswith("--") else (arg[:2], "", arg[2:])
        if name not in HUNT_OPTIONS:
            return None
        attribute, takes_value = HUNT_OPTIONS[name]
        if not takes_value:
            if equals or value:
                return None
            values[attribute] = True
            continue
        if not equals and not value:
            value = next(args, "")
            if value.startswith("-"):
                return None  # a missing value: Typer says which
        if not value:
            return None
        if attribute == "rules":
            rules.append(Path(value))
        elif attribute == "jobs":
            if not value.isascii() or not value.isdigit():
                return None
            values["jobs"] = int(value)
        else:
            values[attribute] = Path(value)
    if not paths:
        return None
    return HuntOptions(tuple(paths), tuple(rules), **values)


def hunt(options: HuntOptions) -> None:
    """Run Sigma rules over files offline and summarise the matches by rule and level."""
    from puffin.detection.hunt import find_sources, run_hunt, summary

    # A short-lived process: what the imports made lives to the end, so the collector need
    # not walk it again at each full collection while the rules load (nor at exit, below).
    gc.freeze()
    console = Console(stderr=True, highlight=False)
    started = time.perf_counter()
    values = placeholders_for_cli(options.placeholders, console)
    no_cache, jobs = options.no_cache, options.jobs
    loaded = load_for_cli(
        list(options.rules),
        console,
        use_cache=not no_cache,
        placeholders=values,
        jobs=jobs or os.cpu_count() or 1,
    )
    correlations, problems = compile_correlations(loaded.correlations)
    for problem in problems:
        console.print(
            f"[yellow]skipped correlation[/yellow] {escape(str(problem))}", soft_wrap=True
        )
    try:
        sources = find_sources(options.paths)
    except FileNotFoundError as error:
        console.print(f"[red]error:[/red] {error}")
        raise SystemExit(2) from error
    console.print(
        f"{len(loaded.rules)} rules, {len(correlations)} correlations, {len(sources)} files"
    )
    with _progress(console, sum(s.size for s in sources)) as advance:
        result = run_hunt(
            sources,
            loaded.rules,
            correlations,
            jobs=jobs or None,
            on_file_done=lambda source: advance(source.size),
            code=loaded.code,
        )
    if result.code and not no_cache:
        _keep_code(result.code)
    for failure in result.errors:
        console.print(f"[red]could not read[/red] {escape(failure)}", soft_wrap=True)
    if options.jsonl is not None:
        with options.jsonl.open("w", encoding="utf-8") as out:
            for match in result.matches:
                out.write(json.dumps(match.to_json(), default=str) + "\n")
    _print_summary(summary(result.matches), console)
    _print_rule_errors(result.rule_errors, {rule.id: rule.title for rule in loaded.rules}, console)
    _print_load_problems(len(loaded.problems), len(problems), console)
    seconds = time.perf_counter() - started
    console.print(
        f"{len(result.matches)} matches in {result.records:,} records from {result.files} files"
        f" ({seconds:.1f} s)"
    )
    gc.freeze()  # the process ends now: its last collections need not walk the rules again


@contextmanager
def _progress(console: Console, total: int) -> Iterator[Callable[[int], None]]:
    """Show a progress bar of bytes hunted on a terminal; yield the function to advance it."""
    if not console.is_terminal:
        yield lambda _size: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} bytes"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("hunting", total=total or 1)
        yield lambda size: progress.advance(task, size)


def _keep_code(code: Mapping[str, bytes]) -> None:
    """Store the matchers this hunt compiled in the compile cache, for the next hunt."""
    try:
        cache = RuleCache(_cache_path())
        try:
            cache.put_code(code)
        finally:
            cache.close()
    except (OSError, sqlite3.Error):  # the cache only saves time: the hunt's answer stands
        return


SUMMARY_TITLE_WIDTH = 90  # longer rule titles are cut with an ellipsis


def _print_summary(rows: list[tuple[str, str, str, int]], console: Console) -> None:
    """Print the matches by level and rule as an aligned text table.

    Built as one styled Text: a rich Table measures every cell and took most of a second
    for a few hundred rules, longer than the rest of a small hunt.
    """
    if not rows:
        console.print("no rule matched")
        return
    titles = [_cut(title, SUMMARY_TITLE_WIDTH) for _, title, _, _ in rows]
    counts = [f"{count:,}" for *_, count in rows]
    widths = (
        max(len("Level"), *(len(level) for level, *_ in rows)),
        max(len("Rule"), *(len(title) for title in titles)),
        max(len("Rule id"), *(len(rule_id) for _, _, rule_id, _ in rows)),
        max(len("Matches"), *(len(count) for count in counts)),
    )
    text = Text()
    text.append("Matches by rule\n", style="italic")
    header = ("Level", "Rule", "Rule id", "Matches")
    text.append(_row(header, widths) + "\n", style="bold")
    text.append("  ".join("-" * width for width in widths) + "\n")
    for (level, _, rule_id, _), title, count in zip(rows, titles, counts, strict=True):
        text.append(level.ljust(widths[0]), style=LEVEL_STYLES.get(level, ""))
        text.append("  " + title.ljust(widths[1]) + "  ")
        text.append(rule_id.ljust(widths[2]), style="dim")
        text.append("  " + count.rjust(widths[3]) + "\n")
    console.print(text, soft_wrap=True, end="")


def _row(cells: tuple[str, ...], widths: tuple[int, ...]) -> str:
    *left, last = cells
    return "  ".join(
        [cell.ljust(width) for cell, width in zip(left, widths, strict=False)]
        + [last.rjust(widths[-1])]
    )


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_rule_errors(
    errors: Mapping[str, RuleErrors], titles: Mapping[str, str], console: Console
) -> None:
    """Print the rules that raised while matching (each error skipped that rule only)."""
    if not errors:
        return
    from rich.table import Table  # only here: most hunts have no rule that raised

    table = Table(title="Rules that raised errors (their other records were still matched)")
    table.add_column("Rule")
    table.add_column("Rule id", style="dim")
    table.add_column("Errors", justify="right")
    table.add_column("Last error")
    ranked = sorted(errors.items(), key=lambda item: (-item[1].count, item[0]))
    for rule_id, entry in ranked:
        title = escape(titles.get(rule_id, ""))
        table.add_row(title, rule_id, f"{entry.count:,}", escape(entry.last[:200]))
    console.print(table)
    total = sum(entry.count for entry in errors.values())
    console.print(f"{len(errors)} rules raised {total:,} errors")


def _print_load_problems(rules: int, correlations: int, console: Console) -> None:
    """Repeat in the summary how many rules were skipped at load (each was listed above)."""
    if rules or correlations:
        console.print(
            f"[yellow]{rules} rules and {correlations} correlations could not be loaded[/yellow]"
            " and were skipped (each is listed above with its file, line and reason)"
        )


def logtest(rules: Sequence[Path], as_json: bool, placeholders: Path | None) -> None:
    """Read log lines or JSON events on standard input; show decoding and matching rules."""
    from puffin.detection.detector import Detector
    from puffin.detection.engine.ruleset import RuleSet
    from puffin.detection.hunt import _json_event
    from puffin.ingest.decoders import Decoders

    console = Console(highlight=False)
    errors = Console(stderr=True, highlight=False)
    values = placeholders_for_cli(placeholders, errors)
    loaded = load_for_cli(list(rules), errors, placeholders=values)
    correlations, problems = compile_correlations(loaded.correlations)
    for problem in problems:
        errors.print(f"[yellow]skipped correlation[/yellow] {escape(str(problem))}", soft_wrap=True)
    detector = Detector(RuleSet(loaded.rules, code=loaded.code), correlations)
    decoders = Decoders()
    for number, raw in enumerate(sys.stdin, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        event = _decode(line, decoders, _json_event)
        hits = detector.evaluate(event, time.time())
        if as_json:
            print(
                json.dumps(
                    {
                        "line": number,
                        "event": event,
                        "matches": [
                            {
                                "rule_id": h.rule_id,
                                "rule_title": h.title,
                                "level": h.level,
                                "correlation": h.correlation,
                            }
                            for h in hits
                        ],
                    },
                    default=str,
                )
            )
            continue
        _print_event(console, number, event, hits)


def _decode(line: str, decoders: Any, json_event: Any) -> dict[str, Any]:
    if line.lstrip().startswith("{"):
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            item = None
        if isinstance(item, dict):
            event: dict[str, Any] = json_event(item)
            event.setdefault("decoder", "json")
            return event
    decoded: dict[str, Any] = decoders.decode(line)
    return decoded


def _print_event(console: Console, number: int, event: dict[str, Any], hits: list[Any]) -> None:
    console.rule(f"event {number}")
    console.print(f"decoder: [bold]{escape(str(event.get('decoder') or '(none)'))}[/bold]")
    for name, value in event.items():
        if name not in ("full_log", "decoder"):
            console.print(f"  {escape(str(name))}: {escape(str(value))}", soft_wrap=True)
    if not hits:
        console.print("no rule matched")
    for hit in hits:
        style = LEVEL_STYLES.get(hit.level, "")
        kind = "correlation" if hit.correlation else "rule"
        console.print(f"[{style}]{hit.level}[/] {kind} {hit.rule_id}: {escape(hit.title)}")
