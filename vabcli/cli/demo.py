"""`make demo`: dub held-out synthetic clips with the bundled model, score them, check they play.

Runs the real `vab` command line, so what it prints is what a user sees:
1. `vab synth` writes a few clips of a seed the bundled model never saw, with ground truth;
2. `vab generate` dubs them with the default model (`--model builtin`);
3. `vab eval` scores the dubbed audio against the ground truth;
4. ffmpeg decodes every dubbed MP4 end to end (a player would play them);
5. `vab generate` again: everything is done already, so every clip is skipped at once.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from vabcli.media import ffmpeg

DEMO_SEED = 99  # the bundled model trained on seed 1000; tests and benchmarks use others
DEMO_CLIPS = 6
# What the demo prints of `vab eval`'s scores, in this order.
SCORES_SHOWN = (
    "onset_f1",
    "onset_offset_ms",
    "event_class_acc",
    "class_acc",
    "fd_logmel",
    "duration_error_ms",
    "silence_ratio",
    "clipping",
)


def vab(*args: str, capture: bool = False) -> str:
    print("$ vab " + " ".join(args), flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "vabcli", *args],
        check=False,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    if done.returncode not in (0, 1):  # 1: some clip failed, shown above; go on
        raise SystemExit(f"vab {args[0]} failed (exit {done.returncode})")
    return done.stdout or ""


def plays(video: Path) -> str | None:
    """None if ffmpeg decodes every stream of `video` without an error, else the error."""
    done = ffmpeg.run(["-i", str(video), "-map", "0", "-f", "null", "-"], loglevel="error")
    problem = done.stderr.strip()
    return None if done.returncode == 0 and not problem else problem or "decoding failed"


def main(out: Path) -> int:
    shutil.rmtree(out, ignore_errors=True)
    clips, dubbed = out / "clips", out / "dubbed"
    manifest = clips / "manifest.jsonl"
    lengths = ("--min-duration", "4", "--max-duration", "10")
    vab("synth", str(clips), "--n", str(DEMO_CLIPS), "--seed", str(DEMO_SEED), *lengths)
    vab("models")
    vab("generate", "--data", str(manifest), "--out", str(dubbed), "--cache", str(out / "cache"))
    against = ("--generated", str(dubbed), "--reference", str(manifest))
    scores = json.loads(vab("eval", *against, "--json", "-q", capture=True) or "{}")
    videos = sorted(dubbed.glob("*.mp4"))
    broken = {v: p for v in videos if (p := plays(v)) is not None}
    vab("generate", "--data", str(manifest), "--out", str(dubbed), "--cache", str(out / "cache"))
    print()
    names = ", ".join(v.name for v in videos)
    print(f"dubbed videos: {len(videos)} MP4s in {dubbed}/ ({names})")
    for video, problem in broken.items():
        print(f"  does not play: {video}: {problem}")
    if not broken:
        print(f"  all {len(videos)} decode without errors (ffmpeg, every stream)")
    print("scores against the ground truth (vab eval):")
    for key in SCORES_SHOWN:
        value = scores.get(key)
        print(f"  {key:18s} {'n/a' if value is None else f'{value:.4g}'}")
    ok = len(videos) == DEMO_CLIPS and not broken and scores.get("missing") == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out")))
