"""ge2e_speaker: resemblyzer's GE2E encoder in torch (random init here), its partial windows and
masking, its weight files, and the WheelFile recipe that fetches pretrained.pt (against wheels
the tests write: no network). One test uses the real weights where they were fetched."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from test_fetch import copying_download

from headstart.errors import HeadstartError
from headstart.zoo import get_entry
from headstart.zoo import registry as reg
from headstart.zoo.fetch import WheelFile, fetch, is_fetched
from headstart.zoo.speaker import partial_counts, reflect_padded, slaney_mel_filters

RATE = 16000
LENGTHS = [3000, 25600, 40000, 4 * RATE + 123]  # short, one partial exactly, 2.5 s, 4 s
FSDD = Path("/work/shared/data/fsdd/recordings")
FETCHED = Path.home() / ".cache" / "headstart" / "models" / reg.GE2E.folder / reg.GE2E.file_name


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture
def models_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "models"
    monkeypatch.setenv("HEADSTART_MODELS", str(home))
    return home


def resemblyzer_partials(n_samples: int, rate=1.3, min_coverage=0.75) -> int:
    """VoiceEncoder.compute_partial_slices (Resemblyzer 0.1.4), counting the slices."""
    samples_per_frame = 160
    n_frames = int(np.ceil((n_samples + 1) / samples_per_frame))
    frame_step = int(np.round((RATE / rate) / samples_per_frame))
    starts = list(range(0, max(1, n_frames - 160 + frame_step + 1), frame_step))
    coverage = (n_samples - starts[-1] * samples_per_frame) / (160 * samples_per_frame)
    return len(starts) - 1 if coverage < min_coverage and len(starts) > 1 else len(starts)


def clip(n: int, seed: int, level: float = 0.1) -> torch.Tensor:
    """A voiced-like test signal: a few harmonics with a moving pitch, plus noise."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / RATE
    pitch = 120 + 40 * seed + 20 * torch.sin(2 * math.pi * 0.5 * t)
    phase = 2 * math.pi * torch.cumsum(pitch, 0) / RATE
    wave = sum(torch.sin(k * phase) / k for k in range(1, 6)) + 0.05 * torch.randn(n, generator=gen)
    return level * wave / wave.abs().max()


def batch_of(clips: list[torch.Tensor], extra: int = 0) -> dict:
    longest = max(len(c) for c in clips) + extra
    audio = torch.zeros(len(clips), longest)
    for row, c in enumerate(clips):
        audio[row, : len(c)] = c
    return {"audio": audio, "lengths": torch.tensor([len(c) for c in clips])}


@pytest.fixture(scope="module")
def random_ge2e():
    torch.manual_seed(0)
    return get_entry("ge2e_speaker").build(pretrained=False)


def test_partial_counts_follow_resemblyzer():
    lengths = list(range(1, 120_000, 997)) + [25_599, 25_600, 25_601, 37_920, 37_921, 38_080]
    expected = [resemblyzer_partials(n) for n in lengths]
    assert partial_counts(torch.tensor(lengths)).tolist() == expected


def test_mel_filters_are_librosas():
    """Values of librosa.filters.mel(sr=16000, n_fft=400, n_mels=40) (librosa 0.11)."""
    filters = slaney_mel_filters()
    assert filters.shape == (40, 201)
    assert filters.sum().item() == pytest.approx(0.9994972, rel=1e-5)
    for row, peak, at in ((0, 0.012404521, 2), (20, 0.0071919174, 44), (39, 0.0017249404, 185)):
        assert filters[row].max().item() == pytest.approx(peak, rel=1e-5)
        assert int(filters[row].argmax()) == at


def test_reflect_padding_is_numpys():
    audio = torch.randn(2, 30_000)
    lengths = torch.tensor([30_000, 26_000])
    padded = reflect_padded(audio * (torch.arange(30_000) < lengths[:, None]), lengths)
    assert padded.shape == (2, 30_400)
    for row, n in enumerate(lengths.tolist()):
        expected = np.pad(audio[row, :n].numpy(), 200, mode="reflect")
        np.testing.assert_array_equal(padded[row, : n + 400].numpy(), expected)
        assert not padded[row, n + 400 :].any()


def test_features_windows_and_unit_pooled_vectors(random_ge2e):
    clips = [clip(n, seed) for seed, n in enumerate(LENGTHS)]
    batch = batch_of(clips)
    with torch.no_grad():
        features = random_ge2e.forward_features(batch)
        pooled = random_ge2e(batch)
    counts = [resemblyzer_partials(n) for n in LENGTHS]
    assert counts == [1, 1, 2, 4]
    assert random_ge2e.window_counts(batch["lengths"]).tolist() == counts
    assert features.shape == (len(LENGTHS), max(counts), 256)
    for row, count in enumerate(counts):
        assert features[row, :count].norm(dim=1).allclose(torch.ones(count), atol=1e-5)
        assert not features[row, count:].any()
    assert pooled.shape == (len(LENGTHS), 256)
    assert pooled.norm(dim=1).allclose(torch.ones(len(LENGTHS)), atol=1e-5)


def test_padding_in_a_batch_changes_nothing(random_ge2e):
    short, long = clip(9000, 1), clip(70_000, 2)
    with torch.no_grad():
        alone = random_ge2e(batch_of([short]))
        padded = random_ge2e(batch_of([short, long], extra=5000))
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_quiet_clips_are_raised_to_the_same_volume(random_ge2e):
    quiet = clip(30_000, 3, level=0.001)  # well under -30 dBFS
    with torch.no_grad():
        once = random_ge2e(batch_of([quiet]))
        louder = random_ge2e(batch_of([quiet * 4, clip(50_000, 4, level=0.5)]))
    assert torch.allclose(once[0], louder[0], atol=1e-4)


def test_groups_and_intermediates(random_ge2e):
    groups = random_ge2e.groups()
    assert [g.name for g in groups] == ["lstm.0", "lstm.1", "lstm.2", "projection"]
    grouped = [id(p) for g in groups for p in g.params]
    assert sorted(grouped) == sorted(id(p) for p in random_ge2e.parameters())
    assert sum(g.numel() for g in groups) == get_entry("ge2e_speaker").num_params
    batch = batch_of([clip(n, seed) for seed, n in enumerate(LENGTHS)])
    with torch.no_grad():
        found = random_ge2e.forward_intermediates(batch)
        features = random_ge2e.forward_features(batch)
    assert [t.shape for t in found] == [features.shape] * 4
    assert torch.allclose(found[-1], features)
    assert random_ge2e.pool_intermediate(found[0], batch).shape == (len(LENGTHS), 256)


def test_weights_round_trip_through_safetensors(random_ge2e, tmp_path):
    path = tmp_path / "ge2e.safetensors"
    save_file(random_ge2e.state_dict(), str(path))
    rebuilt = get_entry("ge2e_speaker").build(weights=path)
    assert rebuilt.weight_id == hashlib.sha256(path.read_bytes()).hexdigest()
    batch = batch_of([clip(n, seed) for seed, n in enumerate(LENGTHS)])
    with torch.no_grad():
        assert torch.allclose(random_ge2e(batch), rebuilt(batch), atol=1e-6)


def test_a_checkpoint_like_resemblyzers_loads(random_ge2e, tmp_path):
    state = {**random_ge2e.state_dict(), "similarity_weight": torch.tensor([10.0])}
    checkpoint = {"step": 7, "model_state": state, "optimizer_state": {"state": {}}}
    path = tmp_path / "pretrained.pt"
    torch.save(checkpoint, path)
    rebuilt = get_entry("ge2e_speaker").build(weights=path)
    assert torch.equal(rebuilt.linear.weight, random_ge2e.linear.weight)


def test_a_file_of_another_network_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"linear.weight": torch.zeros(3, 3)}, str(path))
    with pytest.raises(HeadstartError, match="does not fit ge2e_speaker.*missing"):
        get_entry("ge2e_speaker").build(weights=path)


def test_unfetched_weights_name_the_fetch():
    entry = get_entry("ge2e_speaker")
    assert entry.fetch is reg.GE2E and not entry.available_offline()
    with pytest.raises(HeadstartError) as excinfo:
        entry.build()
    message = str(excinfo.value)
    assert "\n" not in message and "headstart fetch ge2e_speaker" in message


# ---- the WheelFile recipe --------------------------------------------------------------------

WEIGHTS = b"pretend checkpoint bytes" * 500
LICENCE = b"Apache License, Version 2.0"


def write_wheel(folder: Path, members: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "Resemblyzer-0.1.4-py3-none-any.whl", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def wheel_members() -> dict[str, bytes]:
    return {
        "resemblyzer/__init__.py": b"",
        reg.GE2E.member: WEIGHTS,
        reg.GE2E.licence_member: LICENCE,
    }


def recipe(sha: str | None = None) -> WheelFile:
    return dataclasses.replace(reg.GE2E, weights_sha256=sha or hashlib.sha256(WEIGHTS).hexdigest())


def test_wheel_file_fetch_takes_the_member_and_licence(tmp_path, models_home):
    write_wheel(tmp_path / "index", wheel_members())
    calls = []
    folder = fetch(recipe(), download=copying_download(tmp_path / "index", calls))
    assert calls == [("resemblyzer==0.1.4",)]
    assert folder == models_home / "resemblyzer-0.1.4" == recipe().target
    assert (folder / "pretrained.pt").read_bytes() == WEIGHTS
    assert (folder / "LICENSE").read_bytes() == LICENCE
    assert is_fetched(recipe())
    assert [p.name for p in models_home.iterdir()] == ["resemblyzer-0.1.4"], "scratch left"
    fetch(recipe(), download=copying_download(tmp_path / "index", calls))  # already there
    assert len(calls) == 1


def test_wheel_file_wrong_checksum_installs_nothing(tmp_path, models_home):
    write_wheel(tmp_path / "index", wheel_members())
    with pytest.raises(HeadstartError, match="pretrained.pt has sha256 .* expected 000000000000"):
        fetch(recipe("0" * 64), download=copying_download(tmp_path / "index", []))
    assert not is_fetched(recipe("0" * 64))
    assert list(models_home.iterdir()) == []


def test_wheel_file_missing_member_is_a_clear_error(tmp_path, models_home):
    members = wheel_members()
    del members[reg.GE2E.member]
    write_wheel(tmp_path / "index", members)
    with pytest.raises(HeadstartError, match="holds no 'resemblyzer/pretrained.pt'"):
        fetch(recipe(), download=copying_download(tmp_path / "index", []))
    assert list(models_home.iterdir()) == []


# ---- the real weights, where `headstart fetch ge2e_speaker` was run ---------------------------


def fsdd_clip(speaker: str, digit: int, index: int) -> torch.Tensor:
    from headstart.data.audio import load_audio

    return torch.from_numpy(load_audio(FSDD / f"{digit}_{speaker}_{index}.wav", RATE))


@pytest.mark.skipif(
    not FETCHED.is_file(),
    reason=f"real GE2E weights not fetched ({FETCHED} absent): run "
    "`headstart fetch ge2e_speaker` without HEADSTART_MODELS set",
)
@pytest.mark.skipif(not FSDD.is_dir(), reason=f"FSDD recordings not found in {FSDD}")
def test_real_weights_tell_speakers_apart():
    backbone = get_entry("ge2e_speaker").build(weights=FETCHED)
    assert backbone.weight_id == reg.GE2E.weights_sha256
    speakers = ["george", "jackson", "theo"]
    clips = [fsdd_clip(s, digit, 1) for s in speakers for digit in range(5)]
    with torch.no_grad():
        vectors = backbone(batch_of(clips))
    similarity = vectors @ vectors.T
    who = torch.arange(len(speakers)).repeat_interleave(5)
    same = (who[:, None] == who[None, :]) & ~torch.eye(len(clips), dtype=torch.bool)
    different = who[:, None] != who[None, :]
    assert similarity[same].mean() > similarity[different].mean() + 0.05
    # each clip's nearest other clip is by the same speaker
    nearest = similarity.masked_fill(torch.eye(len(clips), dtype=torch.bool), -2).argmax(dim=1)
    assert (who[nearest] == who).float().mean() >= 0.9
