"""Probing media with ffmpeg alone (the imageio-ffmpeg wheel ships no ffprobe).

One ffmpeg call reads the stream header from stderr and copies the video stream's packets to the
`framecrc` muxer on stdout: a demux without decoding, which gives the exact packet count and the
stream's own time span (what `ffprobe -count_packets` would) and reveals truncated files.

Invariant: a VideoInfo's duration is the span its frames cover. A timeline with a long stretch
and no frame in it (a lone frame hours after the rest) is refused rather than believed, since
believing it means hours of decoded scratch for a few frames.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from vabcli.core.errors import MediaError
from vabcli.media import ffmpeg
from vabcli.media.inputs import file_problem

# Stream specifier for "the first real video stream": capital V skips cover art / attached pictures.
FIRST_VIDEO = "0:V:0"

_TRUNCATION_MARKERS = ("partial file", "ended prematurely", "truncated", "moov atom not found")
_STREAM_RE = re.compile(
    r"^\s*Stream #0:(?P<index>\d+)(?:\[[^\]]*\])?(?:\([^)]*\))?: "
    r"(?P<kind>Video|Audio|Subtitle|Data|Attachment): (?P<codec>[\w-]+)(?P<rest>.*)$"
)
_DURATION_RE = re.compile(r"Duration: (?P<dur>N/A|\d+:\d+:\d+(?:\.\d+)?)")
# WxH as ffmpeg writes it in the stream line: after ", " (so a codec tag like `0x1234` is not a
# size), any number of digits per side (a 1x1 video is valid).
_SIZE_RE = re.compile(r", (\d{1,5})x(\d{1,5})(?![\w.])")
# Longest stretch without a frame that is still a video. VFR captures repeat a still frame at
# least every few seconds; a minute without one is a damaged or stitched timeline.
MAX_FRAME_GAP = 60.0
GAP_RATIO = 100.0  # ... and that many typical frame intervals
_RATE_RE = re.compile(r"([\d.]+)(k?) (fps|tbr)\b")
_ROTATION_RE = re.compile(r"rotation of (-?[\d.]+) degrees|^\s*rotate\s*:\s*(-?[\d.]+)", re.I)
_HZ_RE = re.compile(r"(\d+) Hz, ([^,]+)")
_CONTAINER_RE = re.compile(r"^Input #0, (?P<fmt>.+?), from ", re.M)


@dataclass(frozen=True)
class VideoInfo:
    """What extract and mux need to know about a video file.

    `duration` is the first video stream's own span (first packet start to last packet end), not
    the container's, which may include a longer audio track. `start` is where that span begins
    on the file's clock: audio before it is not part of the clip.
    """

    path: Path
    container: str
    duration: float
    start: float  # when the first video frame shows, seconds after the file's time zero
    fps: float
    n_video_packets: int
    video_codec: str
    width: int
    height: int
    rotation: int
    has_audio: bool
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    audio_channels: str | None = None

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as shown to viewers: rotation by 90 or 270 degrees swaps them."""
        if self.rotation % 180 == 90:
            return self.height, self.width
        return self.width, self.height


@dataclass
class _Stream:
    kind: str
    codec: str
    text: str


def probe(path: str | Path) -> VideoInfo:
    """Probe a video file; raises MediaError (naming the file) if it is not a usable video."""
    path = Path(path)
    problem = file_problem(path)
    if problem:
        raise MediaError(f"{path}: {problem}")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file")
    header_and_packets = [
        "-nostats",
        "-i",
        str(path),
        "-map",
        f"{FIRST_VIDEO}?",
        "-c",
        "copy",
        "-f",
        "framecrc",
        "-",
    ]
    done = ffmpeg.run(header_and_packets, loglevel="info")
    lowered = done.stderr.lower()
    if any(marker in lowered for marker in _TRUNCATION_MARKERS):
        raise MediaError(
            f"{path}: truncated or damaged file (ffmpeg: {_first_marker_line(done.stderr)})"
        )
    header, streams = _parse_header(done.stderr, path)
    video = next((s for s in streams if s.kind == "Video" and "attached pic" not in s.text), None)
    if video is None:
        raise MediaError(f"{path}: no video stream")
    packets = _packets(done.stdout.decode("ascii", errors="replace"))
    n_packets, start, span = _packet_span(packets)
    _check_gaps(packets, path)
    if n_packets == 0:
        raise MediaError(f"{path}: video stream has no frames")
    duration = span if span > 0 else _header_duration(header)
    if duration is None or duration <= 0:
        raise MediaError(f"{path}: cannot determine the video duration")
    audio = next((s for s in streams if s.kind == "Audio"), None)
    return _build_info(path, header, video, audio, duration, n_packets, start if span > 0 else 0.0)


@dataclass(frozen=True)
class PacketStats:
    count: int
    duration: float  # earliest packet start to latest packet end, seconds


def packet_stats(path: str | Path, stream: str) -> PacketStats:
    """Packet count and time span of one stream (e.g. `0:v:0`, `0:a:1`), by demuxing only."""
    done = ffmpeg.run_checked(
        ["-i", str(path), "-map", stream, "-c", "copy", "-f", "framecrc", "-"], path
    )
    count, _, span = _packet_span(_packets(done.stdout.decode("ascii", errors="replace")))
    return PacketStats(count, span)


def _build_info(
    path: Path,
    header: str,
    video: _Stream,
    audio: _Stream | None,
    duration: float,
    n_packets: int,
    start: float,
) -> VideoInfo:
    size = _SIZE_RE.search(video.text.splitlines()[0])  # the stream line, not its metadata
    if size is None:
        raise MediaError(f"{path}: video stream has no frame size")
    container = _CONTAINER_RE.search(header)
    hz = _HZ_RE.search(audio.text) if audio else None
    return VideoInfo(
        path=path,
        container=container.group("fmt") if container else "unknown",
        duration=duration,
        start=start,
        fps=_frame_rate(video.text) or n_packets / duration,
        n_video_packets=n_packets,
        video_codec=video.codec,
        width=int(size.group(1)),
        height=int(size.group(2)),
        rotation=_rotation(video.text),
        has_audio=audio is not None,
        audio_codec=audio.codec if audio else None,
        audio_sample_rate=int(hz.group(1)) if hz else None,
        audio_channels=hz.group(2).strip() if hz else None,
    )


def _parse_header(stderr: str, path: Path) -> tuple[str, list[_Stream]]:
    """Split ffmpeg's input description into the header text and one block per stream."""
    start = stderr.find("Input #0")
    if start < 0:
        raise MediaError(f"{path}: not a readable media file ({ffmpeg.last_error_line(stderr)})")
    text = stderr[start:]
    end = text.find("\nOutput #0")
    if end >= 0:
        text = text[:end]
    streams: list[_Stream] = []
    for line in text.splitlines():
        match = _STREAM_RE.match(line)
        if match:
            streams.append(_Stream(match["kind"], match["codec"], match["rest"]))
        elif streams and line.startswith("    "):
            streams[-1].text += "\n" + line  # stream metadata and side data (rotation lives here)
    return text, streams


@dataclass(frozen=True)
class _Packets:
    count: int  # every packet, with or without a timestamp
    timebase: float | None
    spans: list[tuple[int, int]]  # (pts, duration) of the packets that have them, in timebase


def _packets(framecrc: str) -> _Packets:
    timebase = None
    count = 0
    spans = []
    for line in framecrc.splitlines():
        if line.startswith("#tb"):
            num, den = line.split(":", 1)[1].strip().split("/")
            timebase = int(num) / int(den)
        elif line and not line.startswith("#"):
            fields = [f.strip() for f in line.split(",")]
            count += 1
            try:
                spans.append((int(fields[2]), int(fields[3])))
            except (IndexError, ValueError):
                continue  # a packet without a timestamp still counts as a frame
    return _Packets(count, timebase, spans)


def _packet_span(packets: _Packets) -> tuple[int, float, float]:
    """(packet count, start, duration): seconds from the file's time zero to the earliest packet
    (zero if earlier), and from there to the latest packet end."""
    if packets.timebase is None or not packets.spans:
        return packets.count, 0.0, 0.0
    first = min(pts for pts, _ in packets.spans)
    last = max(pts + dur for pts, dur in packets.spans)
    # Packets before time zero (AAC encoder priming) are cut by the container's edit list.
    start = max(first, 0)
    return packets.count, start * packets.timebase, (last - start) * packets.timebase


def _check_gaps(packets: _Packets, path: Path) -> None:
    """MediaError if one stretch without a frame is both over MAX_FRAME_GAP seconds and far
    longer than the video's usual frame interval (a slideshow at one frame a minute is fine)."""
    if packets.timebase is None:
        return
    times = sorted({pts for pts, _ in packets.spans})
    gaps = [(b - a) * packets.timebase for a, b in zip(times[:-1], times[1:], strict=True)]
    if not gaps:
        return
    limit = max(MAX_FRAME_GAP, GAP_RATIO * statistics.median(gaps))
    for number, gap in enumerate(gaps, start=1):
        if gap > limit:
            raise MediaError(
                f"{path}: video timestamps jump {gap:.1f} s between frames {number} and "
                f"{number + 1} of {len(times)} (a damaged or stitched timeline); re-time it, "
                "e.g. ffmpeg -i IN -vf setpts=N/FRAME_RATE/TB OUT"
            )


def _header_duration(header: str) -> float | None:
    match = _DURATION_RE.search(header)
    if not match or match["dur"] == "N/A":
        return None
    hours, minutes, seconds = match["dur"].split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _frame_rate(stream_text: str) -> float | None:
    """The stream's nominal rate: `fps` (average) if given, else `tbr` (guessed real rate)."""
    rates = {
        kind: float(value) * (1000 if k else 1) for value, k, kind in _RATE_RE.findall(stream_text)
    }
    return rates.get("fps") or rates.get("tbr")


def _rotation(stream_text: str) -> int:
    """Display rotation in degrees, normalised to 0, 90, 180 or 270."""
    match = _ROTATION_RE.search(stream_text)
    if not match:
        return 0
    degrees = float(match.group(1) or match.group(2))
    return int(round(degrees / 90.0)) * 90 % 360


def _first_marker_line(stderr: str) -> str:
    for line in stderr.splitlines():
        if any(marker in line.lower() for marker in _TRUNCATION_MARKERS):
            return ffmpeg.last_error_line(line)
    return ffmpeg.last_error_line(stderr)
