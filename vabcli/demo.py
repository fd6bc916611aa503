"""`make demo`: synthesise a few clips, extract, tokenize, train briefly, dub them.

Tokenizing uses the tiny random `debug` encoders (no pretrained weights can be assumed on a
fresh machine), so the 30 training steps only show the machinery and the dubbed audio carries
no meaning yet (the debug codec decodes every token to much the same sound): a bundled model
trained here replaces both (issue 6).
Runs the real `vab` command line, so what it prints is what a user sees.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from .synth import ClipSpec, make_clip, write_tone

CLIPS = {
    "landscape.mp4": ClipSpec(duration=3.0, fps="25", width=320, height=180),
    "portrait phone.mov": ClipSpec(
        duration=2.5, fps="30000/1001", width=320, height=180, rotation=90
    ),
    "silent.mkv": ClipSpec(duration=2.0, fps="24000/1001", audio=False),
    "web.webm": ClipSpec(duration=1.5, fps="30", width=256, height=144),
}


def vab(*args: str) -> None:
    cmd = [sys.executable, "-m", "vabcli", *args]
    print("$ vab " + " ".join(f"'{a}'" if " " in a else a for a in args), flush=True)
    subprocess.run(cmd, check=False)


def main(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    clips, audio = out / "clips", out / "audio"
    for name, spec in CLIPS.items():
        make_clip(clips / name, spec)
        write_tone(audio / (Path(name).stem + ".wav"), spec.duration + 0.7)  # longer: mux trims it
    print(f"made {len(CLIPS)} clips in {clips}", flush=True)
    vab("extract", str(clips), "--cache", str(out / "cache"))
    vab("extract", str(clips), "--cache", str(out / "cache"), "--json")
    debug = ["--codec", "debug", "--image-encoder", "debug"]
    vab("tokenize", str(clips), "--cache", str(out / "cache"), *debug, "--keep-frames")
    vab("cache", "info", "--cache", str(out / "cache"))
    manifest = out / "manifest.jsonl"
    splits = ["train", "train", "train", "val"]
    manifest.write_text("".join(
        json.dumps({"video": f"clips/{name}", "split": split}) + "\n"
        for name, split in zip(CLIPS, splits, strict=True)
    ))  # fmt: skip
    short_run = ["--steps", "30", "--val-every", "10", "--batch-size", "4", "--clip-seconds", "1"]
    vab("train", "--data", str(manifest), "--out", str(out / "run"), "--cache", str(out / "cache"),
        *debug, *short_run)  # fmt: skip
    dubbed = out / "dubbed"
    vab("generate", str(clips), "--out", str(dubbed), "--model", str(out / "run"), "--cache",
        str(out / "cache"), "--steps", "8")  # fmt: skip
    # A re-run, as from cron: every clip is done, so all are skipped at once.
    vab("generate", str(clips), "--out", str(dubbed), "--model", str(out / "run"), "--cache",
        str(out / "cache"))  # fmt: skip
    vab("mux", str(clips), str(audio), "--out", str(out / "muxed"))  # any audio, same rules
    print(f"dubbed videos are in {dubbed}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out"))
