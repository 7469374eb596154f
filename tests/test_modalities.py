"""Every registered modality answers the Modality interface: it is recognised from its data,
reads it, hashes and decodes items, collates a batch of two, and feeds a tiny backbone of its own
kind (a dummy batch, a collated batch and the extractor). The tests are generated from the
registry: a new modality fails here until it has a sample below."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import child_env
from PIL import Image

import headstart.estimators
from headstart.data.sources import read_source
from headstart.engine.data import Collate
from headstart.features.extract import Extractor
from headstart.modalities import MODALITIES, Modality, detect_values, get_modality
from headstart.zoo import get_entry
from headstart.zoo.config import ImagePreprocess, PretrainedCfg, TextPreprocess, WeightSource


class ImageSample:
    """Two small PNGs of different colours; a 32-pixel random-init EfficientNet-Lite0."""

    def values(self, folder):
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for index, colour in enumerate([(200, 40, 40), (40, 40, 200)]):
            path = folder / f"{index}.png"
            Image.fromarray(np.full((40, 48, 3), colour, dtype=np.uint8)).save(path)
            paths.append(path)
        return paths

    def on_disk(self, folder):
        self.values(folder / "a")  # a class-folder tree
        self.values(folder / "b")
        return folder

    def table(self, folder):
        paths = self.values(folder / "files")
        table = folder / "list.csv"
        table.write_text("file,label\n" + "".join(f"{p},x\n" for p in paths))
        return table

    def backbone(self):
        torch.manual_seed(0)
        backbone = get_entry("efficientnet_lite0").build(pretrained=False)
        pre = ImagePreprocess(input_size=32, crop_pct=1.0)
        backbone.cfg = dataclasses.replace(backbone.cfg, preprocess=pre)
        return backbone.eval()


class TextSample:
    """Two short texts; a 2-layer, 32-wide BERT."""

    def values(self, folder):
        return ["the cat sits on the mat", "markets fell sharply today"]

    def on_disk(self, folder):
        folder.mkdir(parents=True, exist_ok=True)
        table = folder / "texts.csv"
        table.write_text("sentence,label\n" + "".join(f"{t},x\n" for t in self.values(folder)))
        return table

    def table(self, folder):
        return self.on_disk(folder)

    def backbone(self):
        import transformers

        from headstart.zoo.text import HFTextBackbone

        words = ["the", "cat", "sits", "on", "mat", "markets", "fell", "sharply", "today"]
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
        tokenizer = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
        config = transformers.BertConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            vocab_size=len(vocab),
        )
        torch.manual_seed(0)
        model = transformers.BertModel(config).eval()
        cfg = PretrainedCfg(WeightSource("none"), TextPreprocess("tiny-bert", max_length=16), 32)
        return HFTextBackbone("tiny-bert", cfg, "random-0", model, tokenizer).eval()


class AudioSample(ImageSample):
    """Two short tones as WAV files (folders and tables as for images); speech_embedding from
    random weights."""

    def values(self, folder):
        from audio_files import tone, write_wav

        return [write_wav(folder / f"{i}.wav", tone(300 + 600 * i, 0.3)) for i in range(2)]

    def backbone(self):
        torch.manual_seed(0)
        return get_entry("speech_embedding").build(pretrained=False).eval()


SAMPLES = {"image": ImageSample(), "text": TextSample(), "audio": AudioSample()}
NAMES = list(MODALITIES)


@pytest.fixture(scope="module", params=NAMES)
def kind(request) -> tuple[Modality, object, object]:
    """(modality, its sample, its tiny backbone), built once per modality."""
    modality = MODALITIES[request.param]
    sample = SAMPLES.get(modality.name)
    if sample is None:
        pytest.fail(f"Modality {modality.name!r} has no sample in tests/test_modalities.py.")
    return modality, sample, sample.backbone()


def test_every_modality_has_a_sample():
    assert set(SAMPLES) == set(MODALITIES)
    assert all(get_modality(name) is MODALITIES[name] for name in NAMES)


def test_names_estimator_default_model_and_preprocess(kind):
    modality, _, backbone = kind
    assert backbone.modality == modality.name
    assert isinstance(backbone.preprocess, modality.preprocess_type)
    assert getattr(headstart.estimators, modality.estimator).modality == modality.name
    assert get_entry(modality.default_model).modality == modality.name
    assert modality.batch_size >= 1 and modality.min_train_rows >= 1


def test_detects_its_data(kind, tmp_path):
    modality, sample, _ = kind
    assert read_source(sample.on_disk(tmp_path / "disk")).modality == modality.name
    assert read_source(sample.table(tmp_path / "table")).modality == modality.name
    values = sample.values(tmp_path / "values")
    assert detect_values(values) is modality
    assert modality.claims(values[0])
    assert modality.is_one_input(values[0])
    assert not modality.is_one_input(sample.table(tmp_path / "table2"))


def test_reads_values_with_ids_and_labels(kind, tmp_path):
    modality, sample, _ = kind
    values = sample.values(tmp_path)
    source = modality.source_from_values(values, ["a", "b"])
    assert source.modality == modality.name and not source.skipped
    assert [i.id for i in source.items] == [
        modality.input_id(v, n) for n, v in enumerate(values, 1)
    ]
    assert [modality.value_of(i) for i in source.items] == values
    assert source.labels == ["a", "b"]


def test_content_hash_follows_content(kind, tmp_path):
    modality, sample, _ = kind
    first, second = modality.source_from_values(sample.values(tmp_path)).items
    again = modality.source_from_values(sample.values(tmp_path / "copy")).items[0]
    assert modality.content_hash(first) == modality.content_hash(again)  # same content
    assert modality.content_hash(first) != modality.content_hash(second)


def test_collated_batch_of_two_runs_through_the_backbone(kind, tmp_path):
    modality, sample, backbone = kind
    items = modality.source_from_values(sample.values(tmp_path)).items
    assert all(modality.decode(i, backbone.preprocess) is not None for i in items)
    targets = np.array([0, 1])
    dataset = modality.train_dataset(items, targets, backbone.preprocess, False)
    inputs, batch_targets = Collate(modality, min_rows=2)([dataset[0], dataset[1]])
    assert batch_targets.tolist() == [0, 1]
    assert Collate(modality, min_rows=3)([dataset[0], dataset[1]]) is None
    inputs = modality.after_transfer(modality.before_transfer(backbone, inputs))
    with torch.inference_mode():
        out = backbone(inputs)
    assert out.shape == (2, backbone.feature_dim) and torch.isfinite(out).all()


def test_dummy_batch_probes_the_backbone(kind):
    modality, _, backbone = kind
    with torch.inference_mode():
        assert backbone(modality.dummy_batch(backbone, 2)).shape == (2, backbone.feature_dim)
        assert backbone(modality.dummy_batch(backbone, 1)).shape == (1, backbone.feature_dim)


def test_extractor_embeds_through_the_modality(kind, tmp_path):
    modality, sample, backbone = kind
    source = modality.source_from_values(sample.values(tmp_path))
    extractor = Extractor(backbone, precision="fp32", device="cpu", workers=0, cache=False)
    assert extractor.batch_size == modality.batch_size
    found = extractor.run(source)
    assert found.features.shape == (2, backbone.feature_dim) and not found.skipped
    assert not np.allclose(found.features[0], found.features[1])


def test_unknown_modality_names_the_known_ones():
    from headstart.errors import HeadstartError

    with pytest.raises(HeadstartError, match="'image', 'text'"):
        get_modality("video")


def test_modalities_import_without_torch(tmp_path):
    """The CLI's cheap paths detect and read data through the modalities: no torch there."""
    SAMPLES["text"].on_disk(tmp_path)
    code = (
        "import sys\n"
        "from headstart.data.sources import read_source\n"
        "from headstart.modalities import MODALITIES, get_modality\n"
        f"source = read_source({str(tmp_path / 'texts.csv')!r})\n"
        "kind = get_modality(source.modality)\n"
        "assert [kind.content_hash(i) for i in source.items]\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(source.modality, sorted(MODALITIES))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env()
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "text"
