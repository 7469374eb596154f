"""Audio end to end: reading folders and tables of clips, every bad file a user has, the
speech_embedding re-implementation against its ONNX original, masking, streaming, every strategy,
and the command line. Clips are tones the tests write; FSDD checks skip without ../shared."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from audio_files import bad_audio, tone, tone_folder, write_wav
from test_layer_scan import run_cli

from headstart.data.audio import load_audio
from headstart.data.sources import read_source
from headstart.errors import HeadstartError
from headstart.estimators import AudioClassifier
from headstart.zoo import get_entry
from headstart.zoo.entry import locate_weights

CACHE_PER_MODULE = True
FSDD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd" / "recordings"
STRATEGIES = ["linear-probe", "mlp-head", "fine-tune", "freeze-unfreeze", "from-scratch", "mfcc"]


@pytest.fixture(scope="module")
def speech():
    return get_entry("speech_embedding").build()


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    return tone_folder(tmp_path_factory.mktemp("tones") / "train")


def batch_of(backbone, clips):
    from headstart.modalities.audio import min_length, pad_batch, pad_clip

    return pad_batch([pad_clip(c, min_length(backbone)) for c in clips])


# ---- reading -------------------------------------------------------------------------------


def test_a_folder_of_class_folders_of_clips_is_audio(tones):
    source = read_source(tones)
    assert source.modality == "audio"
    assert source.class_names == ["high", "low"] and len(source.items) == 8
    assert not source.skipped


def test_a_table_whose_path_column_holds_clips_is_audio(tones, tmp_path):
    rows = ["path,label"] + [f"{p},{p.parent.name}" for p in sorted(tones.rglob("*.wav"))]
    table = tmp_path / "clips.csv"
    table.write_text("\n".join(rows) + "\n")
    source = read_source(table)
    assert source.modality == "audio" and len(source.items) == 8


@pytest.mark.parametrize(
    "suffix, kind", [(".wav", "WAV"), (".flac", "FLAC"), (".ogg", "OGG"), (".mp3", "MP3")]
)
def test_every_supported_format_reads(suffix, kind, tmp_path):
    import soundfile as sf

    clip = tone(440, 0.8, 16000)
    path = tmp_path / "clips" / f"a{suffix}"
    path.parent.mkdir()
    sf.write(str(path), clip, 16000, format=kind)
    samples = load_audio(path, 16000)
    assert abs(len(samples) - len(clip)) < 0.05 * len(clip)
    spectrum = np.abs(np.fft.rfft(samples))  # the tone survives (MP3 shifts it: no sample match)
    assert abs(np.argmax(spectrum) * 16000 / len(samples) - 440) < 5
    assert read_source(tmp_path / "clips").modality == "audio"


def test_stereo_96k_24bit_is_mixed_down_and_resampled(tmp_path):
    left, right = tone(440, 0.5, 96000), tone(660, 0.5, 96000, seed=1)
    path = write_wav(tmp_path / "s.wav", np.stack([left, right], axis=1), 96000, "PCM_24")
    samples = load_audio(path, 16000)
    assert samples.dtype == np.float32 and abs(len(samples) - 8000) <= 2
    assert np.abs(samples).max() < 1.0


def test_bad_audio_is_skipped_one_line_each_and_nothing_is_lost(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "clips"
    expected = bad_audio(folder)
    for i in range(2):
        write_wav(folder / f"good_{i}.wav", tone(500 + 100 * i, 0.5))
    out = tmp_path / "e.npz"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "embed", folder, "-o", out)
    assert code == 0, stderr
    assert "Traceback" not in stdout + stderr
    ids = [str(i) for i in np.load(out)["ids"]]
    assert sorted(Path(i).name for i in ids) == ["good_0.wav", "good_1.wav", "stereo96k.wav"]
    for name, reason in expected.items():
        lines = [line for line in stderr.splitlines() if name in line]
        assert len(lines) == 1 and reason in lines[0], (name, reason, stderr)


def test_nothing_usable_is_a_clear_error(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "clips"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "notes.wav").write_text("not audio")
    code, stdout, stderr = run_cli(monkeypatch, capsys, "embed", folder, "-o", tmp_path / "x.npz")
    assert code != 0 and "Traceback" not in stderr
    assert "notes.wav" in stderr and "not a readable audio file" in stderr


# ---- speech_embedding ------------------------------------------------------------------------


def test_speech_embedding_equals_the_onnx_original(speech):
    """The torch re-implementation against openwakeword's two ONNX files run by onnxruntime."""
    import onnxruntime as ort

    folder = locate_weights(get_entry("speech_embedding").cfg.weights).parent
    clip = np.concatenate([tone(300, 0.7, 16000), tone(900, 0.8, 16000, seed=2)])
    mel_session = ort.InferenceSession(str(folder / "melspectrogram.onnx"))
    embed_session = ort.InferenceSession(str(folder / "embedding_model.onnx"))
    mel = mel_session.run(None, {"input": clip[None] * 32768})[0].squeeze() / 10 + 2
    starts = range(0, mel.shape[0] - 75, 8)
    windows = np.stack([mel[s : s + 76] for s in starts])[..., None].astype(np.float32)
    expected = embed_session.run(None, {"input_1": windows})[0].reshape(len(windows), 96)
    batch = {"audio": torch.from_numpy(clip)[None], "lengths": torch.tensor([len(clip)])}
    with torch.no_grad():
        got = speech.forward_features(batch)[0].numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-3 * np.abs(expected).max())


def test_padding_in_a_batch_leaves_a_clips_vector_alone(speech):
    short, long = tone(400, 0.5, 16000), tone(700, 2.5, 16000, seed=3)
    with torch.no_grad():
        alone = speech(batch_of(speech, [short]))
        padded = speech(batch_of(speech, [short, long]))
    torch.testing.assert_close(alone[0], padded[0], atol=1e-4, rtol=1e-4)


def test_a_long_file_is_streamed_in_chunks_and_pools_like_the_whole(speech, tmp_path):
    from headstart.data.sources import Item
    from headstart.features.extract import Extractor
    from headstart.modalities.audio import _embed_long

    clip = np.concatenate([tone(300 + 200 * i, 1.0, 16000, seed=i) for i in range(6)])
    path = write_wav(tmp_path / "long.wav", clip, 16000)
    pre = dataclasses.replace(speech.preprocess, chunk_seconds=2.0)
    speech.cfg = dataclasses.replace(speech.cfg, preprocess=pre)
    try:
        streamed = _embed_long(Extractor(speech), speech, Item(str(path), path=path))
    finally:
        speech.cfg = get_entry("speech_embedding").cfg
    with torch.no_grad():
        whole = speech(batch_of(speech, [clip]))[0].numpy()
    cosine = streamed @ whole / np.linalg.norm(streamed) / np.linalg.norm(whole)
    assert streamed.shape == whole.shape and cosine > 0.95


# ---- strategies and the command line ---------------------------------------------------------


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_fits_predicts_and_reloads(strategy, tones, tmp_path):
    model = "" if strategy == "mfcc" else "speech_embedding"
    clf = AudioClassifier(model, strategy, epochs=1, verbose=False, val_fraction=0.0, seed=0)
    clf.fit(tones)
    clips = sorted(str(p) for p in tones.rglob("*.wav"))
    predicted = clf.predict(clips)
    assert set(predicted) <= {"low", "high"}
    if strategy in ("linear-probe", "mlp-head", "mfcc"):  # frozen features tell tones apart
        truth = [Path(c).parent.name for c in clips]
        assert list(predicted) == truth
    clf.save(tmp_path / "run")
    again = AudioClassifier.load(tmp_path / "run")
    np.testing.assert_allclose(again.predict_proba(clips), clf.predict_proba(clips), atol=1e-5)


def test_cli_fit_evaluate_predict(tones, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    code, out, err = run_cli(
        monkeypatch, capsys, "fit", tones, "--strategy", "linear-probe", "-o", run
    )
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", run, tones)
    assert code == 0 and "accuracy 1.0000" in out + err, out + err
    clip = sorted(tones.rglob("*.wav"))[0]
    code, out, err = run_cli(monkeypatch, capsys, "predict", run, clip, "--json")
    assert code == 0 and clip.parent.name in out, out + err


def test_an_image_model_on_audio_is_a_clear_error(tones):
    with pytest.raises(HeadstartError, match="takes image input but the data is audio"):
        AudioClassifier("efficientnet_lite0", "linear-probe", verbose=False).fit(tones)


def test_rank_names_the_encoder_and_the_control(tones, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "rank", tones)
    assert code == 0, err
    assert "speech_embedding" in out and "mfcc" in out, out
    # the tests' model folder is empty: the speaker encoder is named, with how to get it
    assert "Not ranked: ge2e_speaker" in out and "headstart fetch ge2e_speaker" in out, out


# ---- real clips --------------------------------------------------------------------------------


@pytest.mark.skipif(not FSDD.is_dir(), reason="needs ../shared/data/fsdd (absent on this machine)")
def test_fsdd_digits_from_three_clips_each(one_thread):
    """Known predictions on known clips: 3 clips per digit of one speaker, the other speakers'
    first recordings to test (the test draws no randomness)."""
    train = sorted(FSDD.glob("*_jackson_1[0-2].wav"))
    test = [p for p in sorted(FSDD.glob("*_0.wav")) if "_jackson_" not in p.name]
    clf = AudioClassifier("speech_embedding", "linear-probe", verbose=False, val_fraction=0.0)
    clf.fit([str(p) for p in train], [p.name[0] for p in train])
    accuracy = clf.score([str(p) for p in test], [p.name[0] for p in test])
    assert accuracy >= 0.8, accuracy


# ---- preprocessing settings ------------------------------------------------------------------


def test_preprocess_settings_are_used_saved_and_restored(tones, tmp_path):
    clf = AudioClassifier(
        "speech_embedding",
        "linear-probe",
        preprocess={"min_seconds": "1.0", "trim_silence": "true"},
        verbose=False,
        val_fraction=0.0,
    ).fit(tones)
    assert clf.backbone_.preprocess.min_seconds == 1.0 and clf.backbone_.preprocess.trim_silence
    clips = sorted(str(p) for p in tones.rglob("*.wav"))
    clf.save(tmp_path / "run")
    again = AudioClassifier.load(tmp_path / "run")
    assert again.backbone_.preprocess == clf.backbone_.preprocess
    np.testing.assert_allclose(again.predict_proba(clips), clf.predict_proba(clips), atol=1e-6)


def test_an_unknown_preprocess_setting_is_a_clear_error(tones):
    clf = AudioClassifier("speech_embedding", "linear-probe", preprocess={"trim": True})
    with pytest.raises(HeadstartError, match="no setting 'trim'.*trim_silence"):
        clf.fit(tones)
    clf = AudioClassifier("speech_embedding", "linear-probe", preprocess={"min_seconds": "x"})
    with pytest.raises(HeadstartError, match="min_seconds='x': expected a float"):
        clf.fit(tones)


@pytest.mark.skipif(not FSDD.is_dir(), reason="needs ../shared/data/fsdd (absent on this machine)")
def test_trim_silence_cuts_the_pauses_around_speech(tmp_path, monkeypatch, capsys):
    from headstart.data.audio import trim_silence

    word = load_audio(FSDD / "3_jackson_7.wav", 16000)
    pause = np.zeros(16000, np.float32)
    padded = np.concatenate([pause, word, pause, word, pause])
    trimmed = trim_silence(padded, 16000)
    assert 1.5 * len(word) < len(trimmed) < len(padded) - 2 * len(pause)
    write_wav(tmp_path / "clips" / "padded.wav", padded, 16000)
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "embed",
        tmp_path / "clips",
        "-o",
        tmp_path / "e.npz",
        "--preprocess",
        "trim_silence=true",
    )
    assert code == 0, err
