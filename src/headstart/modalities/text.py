"""Texts: strings in a table column or a list, tokenised on the main process per batch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import Modality, register_modality

if TYPE_CHECKING:  # the zoo imports the modalities: they import it where it is used
    from ..data.sources import Item
    from ..zoo.config import TextPreprocess

SAMPLE_TEXT = "a short example"


@register_modality
class TextModality(Modality):
    name = "text"
    estimator = "TextClassifier"
    default_model = "minilm_l6"
    control_strategy = "tfidf"
    fine_tune_rows = 1000  # the standard recipe for text encoders pays from here
    # measured here (auto/plan.py has the figures): contrastive at 16 per class, mpnet_base on
    # SST-2, 0.819 -> 0.885 over the probe (5 seeds), 0.838 -> 0.943 on a cross-domain set;
    # beyond 64 per class not measured (SetFit's paper: level or above): a small prior.
    # freeze-unfreeze on 2,000 rows: +1.8 with mpnet_base, -1.6 with minilm_l6: a small prior.
    auto_gains = {
        ("contrastive", "few"): (6.0, "contrastive tuning beats a probe at few labels (SetFit)"),
        ("contrastive", "more"): (1.0, "contrastive tuning on pairs of the labelled texts"),
        ("freeze-unfreeze", "many"): (0.5, "head first, then the encoder"),
    }
    auto_train_rows = 1000
    batch_size = 64
    table_columns = ("text", "sentence")
    column_arg = "text_col"
    column_hint = "the text column with --text-col"
    fallback = True  # any string can be a text
    typed_inputs = True

    @property
    def preprocess_type(self) -> type:
        from ..zoo.config import TextPreprocess

        return TextPreprocess

    # -- recognising

    def claims(self, value: Any) -> bool:
        return isinstance(value, str)

    def is_one_input(self, data: str | Path) -> bool:
        """A str is a text unless it names a path or looks like a table's file name."""
        if not isinstance(data, str):
            return False
        from ..data.sources import TABLE_SUFFIXES

        looks_like_table = data.lower().endswith(TABLE_SUFFIXES) and not any(
            c.isspace() for c in data
        )
        return not looks_like_table and not Path(data).exists()

    # -- reading

    def table_row(self, row_id: str, value: str | None, folder: Path) -> tuple[str, dict]:
        return row_id, {"text": value}

    def source_from_values(self, values, labels=None):
        from ..data.sources import source_from_texts

        return source_from_texts(list(values), labels)

    def input_id(self, value: Any, position: int) -> str:
        return str(position)

    def value_of(self, item: Item) -> str | None:
        return item.text

    # -- the model's input

    def content_hash(self, item: Item) -> str:
        from ..features.cache import content_hash_text

        return content_hash_text(item.text)

    def decode(self, item: Item, preprocess: TextPreprocess) -> str:
        return item.text  # tokenised per batch, where padding can be kept small

    def dummy_batch(self, backbone, size: int = 2):
        return backbone.pad(backbone.token_ids([SAMPLE_TEXT] * size))

    # -- extraction

    def embed(self, extractor, todo, keys, progress):
        """Tokenise everything once, sort by exact token count, so batches carry no padding."""
        from ..features.truncation import count_truncated
        from ..zoo.entry import materialize

        backbone = materialize(extractor.backbone)
        texts = [item.text for item in todo]
        ids = backbone.token_ids(texts)
        order = sorted(range(len(todo)), key=lambda i: len(ids[i]), reverse=True)
        model = backbone.to(extractor.device)
        new, done = {}, 0
        for start in range(0, len(order), extractor.batch_size):
            chunk = order[start : start + extractor.batch_size]
            batch = backbone.pad([ids[i] for i in chunk])
            batch = {k: v.to(extractor.device) for k, v in batch.items()}
            vecs = extractor._forward(model, batch, autocast=True)
            batch_keys = [keys[todo[i].id] for i in chunk]
            extractor._store(batch_keys, vecs)
            new.update(zip(batch_keys, vecs, strict=True))
            done += len(chunk)
            if progress:
                progress(done, len(todo))
        truncated = count_truncated(backbone.tokenizer, texts, backbone.preprocess.max_length)
        return new, [], truncated

    # -- training

    def train_dataset(self, items, targets, preprocess, augment: bool):
        from ..engine.data import TextItems

        return TextItems(items, targets)

    def stack(self, inputs: list) -> list[str]:
        return list(inputs)  # tokenised in before_transfer, on the main process

    def before_transfer(self, backbone, inputs):
        return backbone.tokenize(inputs)
