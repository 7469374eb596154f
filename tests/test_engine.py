"""The Lightning training engine on tiny data: 32-pixel images of two colours with a random-init
EfficientNet-Lite0, and a 2-layer, 32-wide BERT for the text path. CPU only, a few epochs."""

from __future__ import annotations

import dataclasses
import math
import signal

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from PIL import Image

from headstart.data.images import decode_for_model
from headstart.data.sources import Item
from headstart.engine import TrainConfig, TrainData, train, warmup_cosine
from headstart.errors import HeadstartError
from headstart.heads.heads import Head
from headstart.strategies import FineTune, FreezeUnfreeze, FromScratch, Gradual
from headstart.tasks import get_task
from headstart.zoo import get_entry
from headstart.zoo.config import ImagePreprocess, PretrainedCfg, TextPreprocess, WeightSource
from headstart.zoo.text import HFTextBackbone

PRE = ImagePreprocess(input_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=1.0)
CLASSES = get_task("classification", ["red", "blue"])
COLOURS = {0: (200, 40, 40), 1: (40, 40, 200)}


def image_backbone():
    """EfficientNet-Lite0 at random init, fed 32-pixel images."""
    torch.manual_seed(0)  # the same start whatever ran before: some starts train badly at 1e-3
    backbone = get_entry("efficientnet_lite0").build(pretrained=False)
    backbone.reset_head()
    backbone.cfg = dataclasses.replace(backbone.cfg, preprocess=PRE)
    return backbone


def config(tmp_path=None, **changes) -> TrainConfig:
    base = dict(epochs=2, batch_size=8, device="cpu", augment=False, progress=False, workers=0)
    if tmp_path is not None:
        base["workdir"] = tmp_path / "work"
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """24 noisy 48-pixel PNGs, red or blue: 16 to train, 8 to validate."""
    root = tmp_path_factory.mktemp("engine_images")
    rng = np.random.default_rng(0)
    items, targets = [], []
    for index in range(24):
        label = index % 2
        noise = rng.normal(0, 30, (48, 48, 3))
        pixels = np.clip(np.array(COLOURS[label]) + noise, 0, 255).astype(np.uint8)
        path = root / f"{index:02d}.png"
        Image.fromarray(pixels).save(path)
        items.append(Item(str(path), path=path, label=CLASSES.classes[label]))
        targets.append(label)
    targets = np.array(targets, dtype=np.int64)
    return TrainData(items[:16], targets[:16]), TrainData(items[16:], targets[16:])


class CountEpochs(Callback):
    def __init__(self):
        self.started = []

    def on_train_epoch_start(self, trainer, module):
        self.started.append(trainer.current_epoch)


class InterruptAt(Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


def without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if k != "seconds"} for entry in history]


# ---- images --------------------------------------------------------------------------------------


def test_loss_goes_down_and_best_weights_come_back(images, tmp_path):
    backbone, head = image_backbone(), Head(1280, 2)
    history = train(backbone, head, CLASSES, FineTune(lr=1e-3), *images, config(tmp_path, epochs=3))
    assert [e["epoch"] for e in history] == [1, 2, 3]
    assert set(history[0]) == {
        "epoch",
        "train_loss",
        "val_loss",
        "val_accuracy",
        "lr_head",
        "trainable_groups",
        "seconds",
    }
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(e["trainable_groups"] == len(backbone.groups()) for e in history)
    assert all(0 < e["lr_head"] <= 1e-3 for e in history)
    assert (tmp_path / "work" / "last.ckpt").exists()
    # the modules come back in eval mode, on the CPU, trainable as given
    assert not backbone.training and not head.training
    assert all(p.requires_grad and p.device.type == "cpu" for p in backbone.parameters())
    # the weights are those of the epoch with the lowest val_loss
    best = min(history, key=lambda e: e["val_loss"])
    val = images[1]
    batch = torch.stack([decode_for_model(i.path, PRE) for i in val.items]).float() / 255
    batch = (batch - 0.5) / 0.5
    with torch.no_grad():
        logits = head(backbone(batch))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(val.targets))
    assert float(loss) == pytest.approx(best["val_loss"], rel=1e-3)


def test_head_first_keeps_its_start_when_training_only_hurts(images):
    """A head-first strategy starts from a fitted model; an lr that wrecks it must not win."""
    backbone, head = image_backbone(), Head(1280, 2)
    start = {k: v.clone() for k, v in [*backbone.state_dict().items(), *head.state_dict().items()]}
    history = train(backbone, head, CLASSES, FreezeUnfreeze(lr=50.0), *images, config(epochs=2))
    assert [e["epoch"] for e in history] == [0, 1, 2]
    assert "train_loss" not in history[0] and history[0]["trainable_groups"] == 0
    assert np.isfinite(history[0]["val_loss"]) and 0 <= history[0]["val_accuracy"] <= 1
    after = [*backbone.state_dict().items(), *head.state_dict().items()]
    assert all(torch.equal(start[k], v) for k, v in after), "the start was not restored"


def test_head_first_start_loses_to_a_better_epoch(images):
    """An untrained head as the start: training beats it, and the best epoch's weights stay."""
    backbone, head = image_backbone(), Head(1280, 2)
    start = head.net[1].weight.detach().clone()
    history = train(backbone, head, CLASSES, FreezeUnfreeze(lr=1e-3), *images, config(epochs=3))
    best = min(history, key=lambda e: e["val_loss"])
    assert history[0]["epoch"] == 0 and best["epoch"] > 0
    assert not torch.equal(head.net[1].weight, start)


def test_frozen_batchnorm_statistics_stay_fixed(images):
    backbone, head = image_backbone(), Head(1280, 2)
    groups = backbone.groups()
    group_of = {id(p): index for index, g in enumerate(groups) for p in g.params}
    norms = [m for m in backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    frozen_bn = next(m for m in norms if group_of[id(m.weight)] == 0)
    top_bn = [m for m in norms if group_of[id(m.weight)] == len(groups) - 1][-1]
    frozen_stats = frozen_bn.running_mean.clone()
    top_stats = top_bn.running_mean.clone()
    frozen_weight = groups[0].params[0].detach().clone()
    top_weight = groups[-1].params[0].detach().clone()
    top_bn_weight = top_bn.weight.detach().clone()

    # Gradual unfreezing trains only the top group in the first epoch
    history = train(backbone, head, CLASSES, Gradual(lr=1e-3), images[0], None, config(epochs=1))
    assert history[0]["trainable_groups"] == 1
    assert torch.equal(frozen_bn.running_mean, frozen_stats)
    # from pre-trained weights, even trainable norms keep their statistics (affine params train)
    assert torch.equal(top_bn.running_mean, top_stats)
    assert not torch.equal(top_bn.weight, top_bn_weight)
    assert torch.equal(groups[0].params[0], frozen_weight)
    assert not torch.equal(groups[-1].params[0], top_weight)
    assert all(p.requires_grad for p in backbone.parameters())  # handed back as given

    # from random weights, the trained norms learn their statistics
    train(backbone, head, CLASSES, FromScratch(lr=1e-3), images[0], None, config(epochs=1))
    assert not torch.equal(top_bn.running_mean, top_stats)
    assert not torch.equal(frozen_bn.running_mean, frozen_stats)  # every group trains


def test_resume_runs_only_the_missing_epochs(images, tmp_path):
    first = train(
        image_backbone(),
        Head(1280, 2),
        CLASSES,
        FineTune(lr=1e-3),
        *images,
        config(tmp_path, epochs=2),
    )
    counter = CountEpochs()
    history = train(
        image_backbone(),
        Head(1280, 2),
        CLASSES,
        FineTune(lr=1e-3),
        *images,
        config(tmp_path, epochs=3, resume=True),
        callbacks=[counter],
    )
    assert counter.started == [2]
    assert [e["epoch"] for e in history] == [1, 2, 3]
    assert history[:2] == first  # restored from the checkpoint, not run again


def test_interrupted_run_resumes(images, tmp_path):
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train(
            image_backbone(),
            Head(1280, 2),
            CLASSES,
            FineTune(lr=1e-3),
            images[0],
            None,
            config(tmp_path, epochs=2),
            callbacks=[InterruptAt(1)],
        )
    assert signal.getsignal(signal.SIGINT) is before  # Lightning ignores Ctrl+C after one
    assert (tmp_path / "work" / "last.ckpt").exists()
    counter = CountEpochs()
    history = train(
        image_backbone(),
        Head(1280, 2),
        CLASSES,
        FineTune(lr=1e-3),
        images[0],
        None,
        config(tmp_path, epochs=2, resume=True),
        callbacks=[counter],
    )
    assert counter.started == [1]
    assert [e["epoch"] for e in history] == [1, 2]
    # without resume, a run starts over and never picks up the old checkpoint
    counter = CountEpochs()
    train(
        image_backbone(),
        Head(1280, 2),
        CLASSES,
        FineTune(lr=1e-3),
        images[0],
        None,
        config(tmp_path, epochs=1),
        callbacks=[counter],
    )
    assert counter.started == [0]


def test_same_seed_same_history(images):
    runs = []
    for _ in range(2):
        torch.manual_seed(0)  # the random-init modules are the caller's: same start
        head = Head(1280, 2, hidden=16, dropout=0.2)
        history = train(
            image_backbone(),
            head,
            CLASSES,
            FineTune(lr=1e-3),
            *images,
            config(epochs=1, augment=True, seed=3),
        )
        runs.append((without_seconds(history), head.state_dict()))
    assert runs[0][0] == runs[1][0]
    for key, value in runs[0][1].items():
        assert torch.equal(value, runs[1][1][key]), key


def test_unreadable_image_is_skipped(images, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    train_data, val = images
    items = [*train_data.items[:9], Item(str(broken), path=broken, label="red")]
    targets = np.append(train_data.targets[:9], 0)
    history = train(
        image_backbone(),
        Head(1280, 2),
        CLASSES,
        FineTune(lr=1e-3),
        TrainData(items, targets),
        val,
        config(epochs=1, augment=True, batch_size=4),
    )
    assert len(history) == 1 and math.isfinite(history[0]["train_loss"])


def test_bad_configuration_is_one_line(images):
    with pytest.raises(HeadstartError, match="precision"):
        train(
            image_backbone(),
            Head(1280, 2),
            CLASSES,
            FineTune(),
            images[0],
            None,
            config(precision="fp8"),
        )


def test_warmup_then_cosine():
    factor = warmup_cosine(100, 0.1)
    assert factor(0) == pytest.approx(0.1)
    assert factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5)
    assert 0 <= factor(99) < 0.001
    assert warmup_cosine(10, 0.0)(0) == pytest.approx(1.0)


# ---- text ----------------------------------------------------------------------------------------

PETS = ["a", "the", "cat", "dog", "kitten", "sits", "lies", "runs", "on", "mat", "rug"]
MONEY = ["markets", "fell", "rose", "sharply", "today", "shares"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *PETS, *MONEY]


def text_backbone() -> HFTextBackbone:
    import transformers

    tokenizer = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)})
    config = transformers.BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=len(VOCAB),
    )
    torch.manual_seed(0)
    model = transformers.BertModel(config).eval()
    cfg = PretrainedCfg(WeightSource("none"), TextPreprocess("tiny-bert", max_length=16), 32)
    return HFTextBackbone("tiny-bert", cfg, "random-0", model, tokenizer).eval()


def text_data(kind: str, count: int, seed: int) -> TrainData:
    rng = np.random.default_rng(seed)
    items, labels = [], []
    for index in range(count):
        money = index % 2 == 1
        words = rng.choice(MONEY if money else PETS, size=int(rng.integers(3, 8)))
        items.append(Item(f"t{index}", text=" ".join(words)))
        labels.append(float(money) + rng.normal(0, 0.1) if kind == "regression" else int(money))
    if kind == "classification":
        return TrainData(items, np.array(labels, dtype=np.int64))
    if kind == "multilabel":
        matrix = np.array([[1 - x, x] for x in labels], dtype=np.float32)
        return TrainData(items, matrix)
    return TrainData(items, np.array(labels, dtype=np.float32))


@pytest.mark.parametrize(
    ("kind", "metric"),
    [("classification", "val_accuracy"), ("multilabel", "val_f1"), ("regression", "val_mae")],
)
def test_text_backbone_trains(kind, metric):
    task = get_task(kind, [] if kind == "regression" else ["pets", "money"])
    backbone, head = text_backbone(), Head(32, task.out_dim)
    history = train(
        backbone,
        head,
        task,
        FineTune(lr=3e-3),
        text_data(kind, 32, 0),
        text_data(kind, 8, 1),
        config(epochs=3, label_smoothing=0.0, l2sp=0.01),
    )
    assert [e["epoch"] for e in history] == [1, 2, 3]
    assert metric in history[-1] and math.isfinite(history[-1][metric])
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert not backbone.training


# ---- accelerator ---------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_trains_on_the_gpu(images, precision):
    backbone, head = image_backbone(), Head(1280, 2)
    history = train(
        backbone,
        head,
        CLASSES,
        FineTune(lr=1e-3),
        *images,
        config(epochs=3, device="auto", precision=precision),
    )
    assert all(math.isfinite(e["train_loss"]) and math.isfinite(e["val_loss"]) for e in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(p.device.type == "cpu" for p in [*backbone.parameters(), *head.parameters()])
    task = get_task("classification", ["pets", "money"])
    backbone, head = text_backbone(), Head(32, 2)
    history = train(
        backbone,
        head,
        task,
        Gradual(lr=3e-3),
        text_data("classification", 32, 0),
        text_data("classification", 8, 1),
        config(epochs=3, device="cuda", precision=precision),
    )
    assert [e["trainable_groups"] for e in history] == [1, 2, 3]
    assert all(math.isfinite(e["val_loss"]) for e in history)
    assert all(p.device.type == "cpu" for p in backbone.parameters())
