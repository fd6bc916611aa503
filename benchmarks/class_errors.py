"""Where generated sounds get the wrong class: `vab eval`'s event-level judge, broken down.

    python benchmarks/class_errors.py --reference HELD/manifest.jsonl --generated OUT [OUT ...]

For each true sound (each source's events, with its source's label) the judge that `vab eval`
fits on the reference's real audio names the generated sound just after it, as
`event_class_acc` does. This script counts, per folder of generated audio, how those verdicts
split: right, silent (nothing sounding there), heard as another object of the same clip (a
neighbour's timbre), or as a class not in the clip; and the event-level and clip-level class
by how many sounding objects the clip holds. Prints markdown tables.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from vabcli.evaluation.generated_audio import (
    ClipAudio,
    Heard,
    fit_judge,
    judged_sounds,
    load_pairs,
)
from vabcli.evaluation.metrics import ClassJudge

VERDICTS = ("right", "silent", "a neighbour's class", "a class not in the clip")


def verdicts(clip: ClipAudio, heard: Heard, judge: ClassJudge) -> list[tuple[str, str]]:
    """(true label, one of VERDICTS) per labelled sound of the clip, `heard` its generated audio."""
    judged = judged_sounds(clip, heard, judge)
    in_clip = {label for label, _ in judged}
    out = []
    for label, said in judged:
        if said is None:
            verdict = "silent"
        elif said == label:
            verdict = "right"
        else:
            verdict = "a neighbour's class" if said in in_clip else "a class not in the clip"
        out.append((label, verdict))
    return out


def breakdown(generated: Path, reference: Path) -> tuple[str, str]:
    """Two markdown tables for one folder: verdicts by objects per clip, and by true class."""
    clips = load_pairs(generated, reference)
    judge = fit_judge(clips)
    if judge is None:
        raise SystemExit("the reference has no labelled sounds to fit the judge on")
    by_objects: dict[int, Counter] = {}
    by_label: dict[str, Counter] = {}
    clip_hits: dict[int, list[bool]] = {}
    for clip in clips:
        if clip.generated is None:
            continue
        objects = len(clip.entry.sources or ()) or 1
        heard = Heard.of(clip.generated)
        for label, verdict in verdicts(clip, heard, judge):
            by_objects.setdefault(objects, Counter())[verdict] += 1
            by_label.setdefault(label, Counter())[verdict] += 1
        clip_hits.setdefault(objects, []).append(
            judge.clip_label(heard.spec, heard.onsets) == clip.entry.label
        )
    head = "| {} | sounds | " + " | ".join(VERDICTS) + " | clip class |"
    rule = "|---|---:|" + "---:|" * (len(VERDICTS) + 1)

    def row(name: object, counts: Counter, hits: list[bool] | None) -> str:
        total = sum(counts.values())
        shares = " | ".join(f"{counts[v] / total:.3f}" for v in VERDICTS)
        clip = f"{sum(hits) / len(hits):.2f} ({len(hits)} clips)" if hits else ""
        return f"| {name} | {total} | {shares} | {clip} |"

    everything = sum(by_objects.values(), Counter())
    all_hits = [hit for hits in clip_hits.values() for hit in hits]
    objects_table = [head.format("objects in the clip"), rule]
    objects_table += [row(n, by_objects[n], clip_hits[n]) for n in sorted(by_objects)]
    objects_table.append(row("all", everything, all_hits))
    label_table = [head.format("true class"), rule]
    label_table += [row(label, by_label[label], None) for label in sorted(by_label)]
    return "\n".join(objects_table), "\n".join(label_table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--generated", type=Path, nargs="+", required=True)
    args = parser.parse_args()
    for folder in args.generated:
        objects, labels = breakdown(folder, args.reference)
        print(f"\n## {folder}\n\n{objects}\n\n{labels}")


if __name__ == "__main__":
    main()
