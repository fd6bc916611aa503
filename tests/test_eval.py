"""`vab eval`'s measures: each one tells real audio from wrong audio, in the right direction."""

import dataclasses
import json
from itertools import pairwise

import numpy as np
import pytest
import soundfile

from vabcli.evaluation.generated_audio import EvalOptions, fit_judge, load_pairs, score
from vabcli.evaluation.metrics import EVAL_SAMPLE_RATE, frechet_distance, match_onsets

SHIFTS_MS = (0, 30, 60, 90, 150)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from vabcli.world.synth import SynthOptions, synthesize

    out = tmp_path_factory.mktemp("reference")
    return synthesize(out, SynthOptions(n=10, seed=21, min_duration=2.0, max_duration=4.0))


@pytest.fixture(scope="module")
def clips(reference):
    return load_pairs(None, reference)


def _as_generated(clips, audio_of):
    return [dataclasses.replace(c, generated=audio_of(i, c)) for i, c in enumerate(clips)]


def _shuffled(clips):
    """Each clip gets the real audio of the next clip with another label, fitted to length."""

    def other(i, clip):
        j = next(
            k % len(clips)
            for k in range(i + 1, i + len(clips))
            if clips[k % len(clips)].entry.label != clip.entry.label
        )
        return np.resize(clips[j].real, len(clip.real))

    return _as_generated(clips, other)


def _delayed(clips, ms):
    shift = round(ms / 1000 * EVAL_SAMPLE_RATE)

    def delayed(i, clip):
        return np.concatenate([np.zeros(shift, np.float32), clip.real])[: len(clip.real)]

    return _as_generated(clips, delayed)


def test_real_audio_scores_far_better_than_audio_of_other_clips(clips):
    judge = fit_judge(clips)
    real = score(_as_generated(clips, lambda i, c: c.real), judge, EvalOptions())
    wrong = score(_shuffled(clips), judge, EvalOptions())
    assert real["clips"] == wrong["clips"] == 10 and real["missing"] == 0
    assert real["onset_f1"] >= 0.95 and wrong["onset_f1"] < 0.5
    assert real["onset_offset_ms"] < 15 and wrong["onset_offset_ms"] > 100
    assert real["class_acc"] >= 0.9 and wrong["class_acc"] <= 0.5
    assert real["event_class_acc"] >= 0.9 and wrong["event_class_acc"] <= 0.5
    assert real["fd_logmel"] < 1e-3 < wrong["fd_logmel"]
    assert real["duration_error_ms"] == 0 and real["clipping"] == 0
    assert real["silence_ratio"] == pytest.approx(real["silence_ratio_reference"])


def test_silence_scores_as_silence(clips):
    silent = score(_as_generated(clips, lambda i, c: np.zeros_like(c.real)), None, EvalOptions())
    assert silent["onset_f1"] == 0 and silent["onset_offset_ms"] == 1000
    assert silent["silence_ratio"] == 1 and silent["class_acc"] is None


def test_the_event_level_class_hears_silence_and_late_sound_as_misses(clips):
    judge = fit_judge(clips)
    silent = score(_as_generated(clips, lambda i, c: np.zeros_like(c.real)), judge, EvalOptions())
    assert silent["event_class_acc"] == 0  # the judge would name a class for silence too
    on_time, late = (score(_delayed(clips, ms), judge, EvalOptions()) for ms in (0, 250))
    assert on_time["event_class_acc"] >= 0.9 and late["event_class_acc"] < 0.6


def test_shifting_real_audio_worsens_the_sync_measures_monotonically(clips):
    results = [score(_delayed(clips, ms), None, EvalOptions()) for ms in SHIFTS_MS]
    offsets = [r["onset_offset_ms"] for r in results]
    f1s = [r["onset_f1"] for r in results]
    assert all(a < b for a, b in pairwise(offsets)), offsets
    assert offsets[1] == pytest.approx(30, abs=8) and offsets[3] == pytest.approx(90, abs=8)
    assert all(a >= b for a, b in pairwise(f1s)), f1s
    assert f1s[0] > 0.95 and f1s[-1] < 0.1  # 150 ms is past the 100 ms tolerance
    strict = [score(_delayed(clips, ms), None, EvalOptions(tolerance=0.05)) for ms in (0, 60)]
    assert strict[0]["onset_f1"] > 0.95 > 0.1 > strict[1]["onset_f1"]


def test_measures_by_hand():
    assert match_onsets(np.array([1.0, 1.05, 3.0]), np.array([1.02, 2.0]), 0.1) == 1
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-9)
    # Two unit Gaussians whose means differ by 2 along one axis: distance 4.
    assert frechet_distance(a, a + [2, 0, 0]) == pytest.approx(4, rel=1e-6)


def test_vab_eval_cli(clips, reference, tmp_path, runner):
    from vabcli.cli.main import app

    generated = tmp_path / "generated"
    generated.mkdir()
    for clip in clips[:-1]:  # the last clip has no generated audio
        soundfile.write(generated / f"{clip.entry.video.stem}.wav", clip.real, EVAL_SAMPLE_RATE)
    args = ["eval", "--generated", str(generated), "--reference", str(reference)]
    result = runner.invoke(app, [*args, "--json", "-q"])
    assert result.exit_code == 1  # one clip was not generated
    scores = json.loads(result.stdout)
    assert scores["clips"] == 9 and scores["missing"] == 1
    assert scores["onset_f1"] > 0.95 and scores["class_acc"] >= 0.9
    assert "no generated audio for" in result.stderr
    text = runner.invoke(app, [*args, "--tolerance", "50", "--plot", str(tmp_path / "plots")])
    assert "onset_f1" in text.stdout and "within 50 ms" in text.stdout
    assert "event_class_acc" in text.stdout and "9 spectrogram pictures" in text.stderr
    assert len(list((tmp_path / "plots").glob("*.png"))) == 9
    missing = runner.invoke(
        app, ["eval", "--generated", str(tmp_path / "nope"), "--reference", str(reference)]
    )
    assert missing.exit_code == 2


def test_evaluate_generated_is_the_library_call_behind_vab_eval(clips, reference, tmp_path):
    from vabcli.evaluation.generated_audio import READING, SCORING, evaluate_generated

    generated = tmp_path / "generated"
    generated.mkdir()
    for clip in clips[:-1]:
        soundfile.write(generated / f"{clip.entry.video.stem}.wav", clip.real, EVAL_SAMPLE_RATE)
    steps = []
    result = evaluate_generated(generated, reference, EvalOptions(), None, 2, steps.append)
    assert result.missing == [clips[-1].entry.video]
    assert (result.scores["clips"], result.scores["missing"]) == (9, 1)
    assert steps == [READING] * len(clips) + [SCORING]
    # The judge fitted on other clips: read as well, and still a judge that hears classes.
    steps.clear()
    judged = evaluate_generated(generated, reference, judge_data=reference, on_step=steps.append)
    assert judged.scores["class_acc"] == result.scores["class_acc"]
    assert steps == [READING] * 2 * len(clips) + [SCORING]


def test_plot_draws_real_above_generated_with_the_true_events(clips, reference, tmp_path):
    """`vab eval --plot DIR`: a PNG per clip with generated audio: the real spectrogram above
    the generated one, a dashed line at each true event in both."""
    from PIL import Image

    from vabcli.evaluation.generated_audio import clip_events, evaluate_generated
    from vabcli.evaluation.metrics import mel_db
    from vabcli.evaluation.plots import spectrogram_figure

    generated = tmp_path / "generated"
    generated.mkdir()
    for clip in clips[:2]:  # two clips get (silent) generated audio, the rest none
        soundfile.write(generated / f"{clip.entry.video.stem}.wav", 0 * clip.real, EVAL_SAMPLE_RATE)
    result = evaluate_generated(generated, reference, plot=tmp_path / "plots")
    names = [f"{c.entry.video.stem}.png" for c in clips[:2]]
    assert sorted(p.name for p in result.plots) == sorted(names)
    assert Image.open(result.plots[0]).size == (1000, 450)
    silent = dataclasses.replace(clips[0], generated=np.zeros_like(clips[0].real))
    top, bottom = spectrogram_figure(silent).axes
    assert np.array_equal(top.images[0].get_array(), mel_db(silent.real).T)
    assert np.array_equal(bottom.images[0].get_array(), mel_db(silent.generated).T)
    events = sorted(clip_events(silent))
    for axis in (top, bottom):
        assert sorted(line.get_xdata()[0] for line in axis.get_lines()) == pytest.approx(events)
