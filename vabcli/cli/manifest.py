"""`vab manifest`: a manifest from a folder tree of clips or from a CSV that lists them."""

from pathlib import Path
from typing import Annotated

import typer

from vabcli.cli.common import OverwriteOpt, QuietOpt, app, one_line_failures
from vabcli.cli.console import print_warning, stderr


@app.command()
def manifest(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="SOURCE",
            help="A folder of clips (label: each clip's folder name), or a CSV listing them.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", metavar="FILE", help="Manifest to write ('-': standard output)."
        ),
    ] = Path("manifest.jsonl"),
    split: Annotated[
        str,
        typer.Option(
            metavar="SHARES",
            help="TRAIN:VAL:TEST shares for clips without a split, by a stable hash of their "
            "path; or one split for all (train, val, test).",
        ),
    ] = "8:1:1",
    columns: Annotated[
        str | None,
        typer.Option(
            metavar="NAMES",
            help="The CSV's column names, comma-separated, for a CSV without a header row.",
        ),
    ] = None,
    video_pattern: Annotated[
        str | None,
        typer.Option(
            metavar="PATTERN",
            help="Build each video's path from the CSV's columns, e.g. "
            "'clips/{id}_{second:06d}.mp4'.",
        ),
    ] = None,
    keep_missing: Annotated[
        bool,
        typer.Option("--keep-missing", help="Keep rows whose video does not exist."),
    ] = False,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write a manifest for vab train, tokenize or eval from clips you already have.

    From a folder: every video below it, labelled with the name of the folder it is in. From a
    CSV: the columns video, label, split, start and end (seconds) fill the manifest's fields;
    other columns serve --video-pattern. Relative paths in the CSV are from its folder; paths in
    the manifest are from the manifest's folder. Videos that do not exist are left out and
    counted. Prints the manifest's path.
    """
    from vabcli.data.manifest_sources import (
        SplitShares,
        records_from_csv,
        records_from_folder,
        write_manifest,
    )

    try:
        shares = SplitShares.parse(split)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--split") from None
    names = None if columns is None else [name.strip() for name in columns.split(",")]
    if source.is_dir() and (names or video_pattern):
        raise typer.BadParameter("--columns and --video-pattern are for a CSV, not a folder")
    to_stdout = str(out) == "-"
    with one_line_failures("interrupted; no manifest written"):
        if source.is_dir():
            records = records_from_folder(source, shares)
        else:
            records = records_from_csv(source, shares, names, video_pattern)
        target = None if to_stdout else out
        summary = write_manifest(records, target, overwrite=overwrite, keep_missing=keep_missing)
    if not to_stdout:
        print(out)
    if not quiet:
        splits = ", ".join(f"{name} {summary.splits[name]}" for name in sorted(summary.splits))
        labels = f"{len(summary.labels)} labels" if summary.labels else "no labels"
        stderr.print(f"{summary.clips} clips ({splits}; {labels})", markup=False)
    left_out = [("missing", summary.missing), ("not UTF-8 named", summary.unusable)]
    for why, videos in left_out:
        if videos:  # shown even with --quiet: the manifest lacks what its source listed
            count = f"{len(videos)} {why} video" + ("s" if len(videos) > 1 else "")
            print_warning(f"left out {count}, the first: {videos[0]}")
