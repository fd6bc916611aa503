"""`vab cache info` and `vab cache prune`: see and bound what the cache holds."""

import json
from typing import Annotated

import typer

from vabcli.cli.common import CacheOpt, JsonOpt, app, open_cache
from vabcli.core.cache_admin import human_size, leftovers, parse_byte_count, prune, usage

cache_app = typer.Typer(
    help="See and bound the cache (extracted frames, features, tokens).",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")


@cache_app.command()
def info(cache: CacheOpt = None, as_json: JsonOpt = False) -> None:
    """Entries and bytes per stage (extract, visual, audio_tokens), and leftover temporaries
    of killed runs (JSON: a line with leftover_temporaries and size, when there are any)."""
    store = open_cache(cache, sweep_leftovers=False)
    stages, left = usage(store), leftovers(store)
    if as_json:
        for stage in stages:
            print(json.dumps({"cache": str(store.root), **stage.__dict__}))
        if left.paths:
            record = {"leftover_temporaries": len(left.paths), "size": left.size}
            print(json.dumps({"cache": str(store.root), **record}))
        return
    print(f"cache: {store.root}")
    for stage in stages:
        stale = f"  ({stage.stale_entries} in an old format)" if stage.stale_entries else ""
        print(f"{stage.stage:14s} {stage.entries:7d} entries  {human_size(stage.size):>10s}{stale}")
    total = sum(s.size for s in stages)
    print(f"{'total':14s} {sum(s.entries for s in stages):7d} entries  {human_size(total):>10s}")
    if left.paths:
        print(
            f"leftover temporaries of killed runs: {len(left.paths)} "
            f"({human_size(left.size)}); vab cache prune removes them"
        )


_MAX_SIZE_HELP = (
    "Remove least recently used entries until the cache is at most SIZE (e.g. 20G, 500M; 0 "
    "empties it)."
)


@cache_app.command(name="prune")
def prune_command(
    cache: CacheOpt = None,
    max_size: Annotated[
        str | None, typer.Option("--max-size", metavar="SIZE", help=_MAX_SIZE_HELP)
    ] = None,
    unused_days: Annotated[
        float | None,
        typer.Option(
            "--unused-days", metavar="DAYS", min=0, help="Remove entries unused for DAYS days."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be removed.")
    ] = False,
) -> None:
    """Remove leftover temporaries of killed runs, old-format entries, and entries by age or
    size. Removing never breaks a result: a pruned entry is recomputed when next needed."""
    try:
        limit = parse_byte_count(max_size) if max_size is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--max-size") from None
    report = prune(open_cache(cache, sweep_leftovers=False), limit, unused_days, dry_run)
    verb = "would remove" if dry_run else "removed"
    temporaries = (
        f" and {report.leftovers} leftover temporaries ({human_size(report.leftover_size)})"
        if report.leftovers
        else ""
    )
    print(
        f"{verb} {report.removed} entries ({human_size(report.freed)}){temporaries}; "
        f"{human_size(report.remaining)} left"
    )
