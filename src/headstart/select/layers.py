"""Cut layers: score the pooled activations after each parameter group of one backbone.

A tap wraps the backbone so that one forward pass returns, side by side, the pooled output of
every group (input to output; the last one is the usual embedding), read off the backbone's
forward_intermediates (one unpooled tensor per group; see zoo.backbone). It runs through the
ordinary Extractor, so decoding, batching, BatchNorm folding, bf16 and the cache all apply; its
cache key differs from the plain backbone's, so the two never mix.

Reading the profile: where transferability peaks below the top, the groups above the peak have
specialised to the source task and should be retrained; where it peaks at the top, the
pre-trained top already suits the data and only the top group needs adapting.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch
from torch import nn

from ..data.sources import Source
from ..errors import HeadstartError
from ..features.extract import Extractor
from ..modalities import get_modality
from ..zoo.backbone import Backbone
from .rank import Candidate, Ranking, finish, labels_of, no_transfer_row, prepare, score_features

PEAK_TOLERANCE = 0.02  # share of the profile's range: a deeper cut this close to the best wins


class LayerTap(nn.Module):
    """forward(batch) -> pooled output of every group, concatenated (input to output).

    Every group but the last is pooled by the backbone's pool_intermediate; the last group's
    output is forward_features, pooled as the backbone pools its embedding.
    """

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.inner = backbone
        self.group_names = [g.name for g in backbone.groups()]
        self.name, self.modality = f"{backbone.name}:layers", backbone.modality
        self.weight_id = backbone.weight_id
        self.dims = self._dims()
        self.cfg = replace(backbone.cfg, feature_dim=sum(self.dims))

    @property
    def preprocess(self):
        return self.inner.preprocess

    def forward(self, batch) -> torch.Tensor:
        cuts = self._cuts(batch)
        return torch.cat([c.to(cuts[-1].dtype) for c in cuts], dim=1)

    def _cuts(self, batch) -> list[torch.Tensor]:
        # self.inner is whichever copy runs (BatchNorm folding deep-copies the whole tap)
        found = self.inner.forward_intermediates(batch)
        if len(found) != len(self.group_names):
            raise HeadstartError(
                f"{self.inner.name} gave {len(found)} intermediate outputs for "
                f"{len(self.group_names)} parameter groups; expected one per group."
            )
        pooled = [self.inner.pool_intermediate(t, batch) for t in found[:-1]]
        return [*pooled, self.inner.pool(found[-1], batch)]

    def _dims(self) -> list[int]:
        batch = get_modality(self.modality).dummy_batch(self.inner, 1)
        with torch.inference_mode():
            return [cut.shape[1] for cut in self._cuts(batch)]

    # text extraction asks the backbone for these
    def token_ids(self, texts):
        return self.inner.token_ids(texts)

    def pad(self, ids):
        return self.inner.pad(ids)

    @property
    def tokenizer(self):
        return self.inner.tokenizer

    # audio extraction asks the backbone for this
    def min_samples(self) -> int:
        return self.inner.min_samples()


class LayerExtractor(Extractor):
    @property
    def model_key(self) -> str:
        import hashlib

        base = super().model_key
        names = ",".join(self.backbone.group_names)
        # v2: cuts read off forward_intermediates (some differ from the old hooks' modules)
        return hashlib.sha256(f"{base}|layers-v2|{names}".encode()).hexdigest()[:32]


# ---- scoring -------------------------------------------------------------------------------


def rank_layers(
    source: Source,
    candidate: Candidate,
    *,
    seed: int = 0,
    max_items: int | None = None,
    **extract,
) -> Ranking:
    """One row per cut (group), the no-transfer row, and how many groups to unfreeze."""
    from .rank import MAX_ITEMS

    source = prepare(source, MAX_ITEMS if max_items is None else max_items, seed)
    start = time.perf_counter()
    tap, emb = layer_features(source, candidate, **extract)
    seconds = (time.perf_counter() - start) / len(tap.dims)
    y = labels_of(emb.items)
    rows, offset = [], 0
    for index, (name, dim) in enumerate(zip(tap.group_names, tap.dims, strict=True)):
        cut_start = time.perf_counter()
        row = score_features(emb.features[:, offset : offset + dim], y, seed)
        offset += dim
        row.candidate, row.kind, row.group = f"{candidate.label}@{name}", "layer", index
        row.about = f"pooled output of group {index} ({name}) of {len(tap.dims)}"
        row.seconds = seconds + time.perf_counter() - cut_start
        rows.append(row)
    advice = recommend_unfreeze([r.logme for r in rows], tap.group_names)
    ranking = finish([*rows, no_transfer_row(source, seed)], source, advice)
    ranking.verdict += f" {advice['reason']}"
    return ranking


def layer_features(source: Source, candidate: Candidate, **extract):
    from ..zoo import get_entry, load_backbone
    from ..zoo.entry import materialize

    if candidate.pretrained:
        lazy = load_backbone(candidate.model, source.modality, candidate.weights)
        backbone = materialize(lazy)  # the tap needs the network itself, not only its identity
    else:
        backbone = get_entry(candidate.model).build(pretrained=False)
    tap = LayerTap(backbone)
    extract = {k: v for k, v in extract.items() if v is not None}
    return tap, LayerExtractor(tap, **extract).run(source)


def recommend_unfreeze(profile: list[float], names: list[str]) -> dict:
    """How many groups, from the top, to train: those above the transferability peak (>= 1)."""
    count = len(profile)
    best, worst = max(profile), min(profile)
    near = best - PEAK_TOLERANCE * (best - worst)
    peak = max(i for i, score in enumerate(profile) if score >= near)
    unfreeze = max(1, count - 1 - peak)
    if peak == count - 1:
        reason = (
            f"LogME peaks at the top group ({names[peak]}): the pre-trained top suits this data; "
            f"unfreeze {unfreeze} group of {count} (the top)."
        )
    else:
        reason = (
            f"LogME peaks at group {peak} ({names[peak]}) of {count}: the {unfreeze} group(s) "
            f"above it fit the source task better than this one; unfreeze {unfreeze} of {count}."
        )
    return {"peak_group": peak, "unfreeze": unfreeze, "groups": count, "reason": reason}
