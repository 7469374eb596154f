"""Text backbones on transformers: the bundled MiniLM, plain guide names, any hf:<id or folder>."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..errors import HeadstartError
from .backbone import Backbone, ParamGroup
from .config import PretrainedCfg, TextPreprocess, WeightSource
from .fetch import SplitWheels
from .weights import hf_hub_cached, hub_download, hub_reachable, load_state_dict


class HFTextBackbone(Backbone):
    modality = "text"

    def __init__(self, name, cfg: PretrainedCfg, weight_id: str, model: nn.Module, tokenizer=None):
        super().__init__(name, cfg, weight_id)
        self.model = model
        self.tokenizer = tokenizer

    @property
    def preprocess(self) -> TextPreprocess:
        return self.cfg.preprocess

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if self.tokenizer is None:
            raise HeadstartError(
                f"No tokenizer for {self.name!r} is available offline. Use a folder that holds "
                "tokenizer files (--model hf:/path/to/folder) or the bundled minilm_l6."
            )
        return dict(
            self.tokenizer(
                list(texts),
                padding=True,
                truncation=True,
                max_length=self.preprocess.max_length,
                return_tensors="pt",
            )
        )

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, truncated at max_length, unpadded."""
        if self.tokenizer is None:
            self.tokenize([])  # raises the missing-tokenizer error
        encoded = self.tokenizer(
            list(texts), truncation=True, max_length=self.preprocess.max_length, padding=False
        )
        return encoded["input_ids"]

    def pad(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        """Right-padded input_ids and attention_mask for a batch of token-id lists."""
        longest = max(len(row) for row in ids)
        pad_id = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(ids), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), longest), dtype=torch.long)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, : len(tokens)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    def count_truncated(self, texts: list[str]) -> int:
        """How many texts are longer than max_length tokens (they get cut)."""
        limit = self.preprocess.max_length
        lengths = self.tokenizer(list(texts), add_special_tokens=True, return_length=True)["length"]
        return sum(int(n) > limit for n in lengths)

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, T, D) last hidden states."""
        return self.model(**_inputs(batch)).last_hidden_state

    def pool(self, features: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        pooled = pool(features, batch["attention_mask"], self.preprocess.pooling)
        if self.preprocess.normalize:
            pooled = nn.functional.normalize(pooled, dim=-1)
        return pooled

    def forward_intermediates(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The output of each group from Hugging Face's hidden states: the embeddings' output,
        then each layer's; a trailing group (final norm, pooler) gets the last hidden state.

        GPT-2 and T5 apply their final norm to the last layer's entry of hidden_states, so there
        the last layer's output is already normalised, as in their last hidden state.
        """
        out = self.model(**_inputs(batch), output_hidden_states=True)
        states, last = out.hidden_states, out.last_hidden_state
        groups = self.groups()
        layers = sum(g.name.startswith("layer.") for g in groups)
        if len(states) != layers + 1:
            raise HeadstartError(
                f"{self.name}: the encoder returned {len(states)} hidden states for {layers} "
                "layers; expected one per layer plus the embeddings. Its layers cannot be cut."
            )
        found = []
        for group in groups:
            if group.name == "embeddings":
                found.append(states[0])
            elif group.name.startswith("layer."):
                found.append(states[int(group.name.removeprefix("layer.")) + 1])
            else:  # "final": what follows the layers
                found.append(last)
        return found

    def reset_head(self) -> None:
        pass  # encoders are loaded without a task head

    def groups(self) -> list[ParamGroup]:
        return layer_groups(self.model)


def _inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    if how == "cls":
        return hidden[:, 0]
    if how == "last":
        last = mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0]), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def layer_groups(model: nn.Module) -> list[ParamGroup]:
    """Embeddings, one group per transformer layer, then whatever follows (final norms)."""
    stack_name, stack = max(
        ((n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList)),
        key=lambda item: len(item[1]),
        default=("", None),
    )
    before, after = ParamGroup("embeddings"), ParamGroup("final")
    layers = [ParamGroup(f"layer.{i}") for i in range(len(stack) if stack is not None else 0)]
    seen_layer = False
    for name, param in model.named_parameters():
        prefix = f"{stack_name}."
        if stack is not None and name.startswith(prefix):
            index = int(name[len(prefix) :].split(".")[0])
            layers[index].params.append(param)
            layers[index].modules.append(name)
            seen_layer = True
        else:
            # MPNet's shared relative-position bias is listed after the layers but computed
            # before them: it belongs with the embeddings (input side).
            input_side = not seen_layer or "relative_attention_bias" in name
            target = before if input_side else after
            target.params.append(param)
            target.modules.append(name)
    return [g for g in [before, *layers, after] if g.params]


# ---- entries and factories -------------------------------------------------------------------

ENCODER_ONLY_T5 = ("t5", "mt5", "umt5")


def new_encoder(config) -> nn.Module:
    """A randomly initialised encoder for `config` (T5-style models keep only their encoder)."""
    from transformers import AutoModel, T5EncoderModel

    if config.model_type in ENCODER_ONLY_T5:
        return T5EncoderModel(config)
    return AutoModel.from_config(config)


def st_pooling(folder: Path) -> tuple[str, bool, int | None]:
    """(pooling, normalize, max_length) from a sentence-transformers folder, with defaults."""
    pooling, normalize, max_length = "mean", False, None
    modules = folder / "modules.json"
    if modules.exists():
        kinds = [m.get("type", "") for m in json.loads(modules.read_text())]
        normalize = any(k.endswith("Normalize") for k in kinds)
        pool_cfg = next(folder.glob("*_Pooling/config.json"), None)
        if pool_cfg is not None and json.loads(pool_cfg.read_text()).get("pooling_mode_cls_token"):
            pooling = "cls"
    st_cfg = folder / "sentence_bert_config.json"
    if st_cfg.exists():
        max_length = json.loads(st_cfg.read_text()).get("max_seq_length")
    return pooling, normalize, max_length


def hf_text_entry(
    name: str,
    location: str,
    kind: str,
    licence: str,
    *,
    config=None,
    pooling: str = "mean",
    description: str = "",
    package: tuple[str, str] | None = None,
    fetched: tuple[SplitWheels, tuple[str, bool, int]] | None = None,
):
    """A ZooEntry for a Hugging Face encoder in a folder (`kind` file/package) or on the hub.

    `fetched`: weights that `headstart fetch` brings into a folder, with their pooling known in
    code, so the entry (and its cache key) is the same before and after the fetch.
    """
    from .entry import ZooEntry

    folder = Path(location) if kind in ("file", "package-folder") else None
    if config is None:
        config = load_config(name, location, folder)
    normalize, max_length = False, None
    if fetched is not None:
        pooling, normalize, max_length = fetched[1]
    elif folder is not None:
        pooling, normalize, max_length = st_pooling(folder)
    max_length = max_length or min(getattr(config, "max_position_embeddings", 512) or 512, 512)
    dim = int(getattr(config, "hidden_size", None) or config.d_model)
    with torch.device("meta"):
        model = new_encoder(config)
    source = WeightSource("file" if folder else "hub", location, None, licence)
    if package is not None:  # (package:relative folder, pinned sha256 of the weights)
        source = WeightSource("package", package[0], package[1], licence)
    if fetched is not None:
        source = WeightSource("file", location, fetched[0].weights_sha256, licence)
    pre = TextPreprocess(location, int(max_length), pooling, normalize)
    cfg = PretrainedCfg(source, pre, dim, 0, {"config": config.to_dict()})
    n = sum(p.numel() for p in model.parameters())
    recipe = fetched[0] if fetched else None
    return ZooEntry(name, "text", config.model_type, cfg, build_hf, description, n, recipe)


def load_config(name: str, location: str, folder: Path | None):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(folder or location), local_files_only=True)
    except (OSError, ValueError):
        pass
    if folder is not None:
        raise HeadstartError(
            f"Folder '{folder}' for {name!r} has no readable config.json. Point hf: at a folder "
            "saved with model.save_pretrained(...) (config.json plus weights)."
        )
    if hub_reachable():
        try:
            return AutoConfig.from_pretrained(location)
        except Exception:  # unreachable hub: reported below in one line
            pass
    raise HeadstartError(
        f"The configuration of {name!r} ({location}) cannot be reached: no network and not in "
        "the local Hugging Face cache. Use a local folder: --model hf:/path/to/folder, or the "
        "bundled text backbone minilm_l6."
    )


def weight_file_in(folder: Path) -> Path | None:
    for candidate in ("model.safetensors", "pytorch_model.bin"):
        if (folder / candidate).exists():
            return folder / candidate
    return None


def build_hf(entry, weights_file, pretrained: bool) -> HFTextBackbone:
    from transformers import AutoConfig

    config = AutoConfig.for_model(**entry.cfg.extra["config"])
    from .entry import weight_file

    path, weight_id = weight_file(
        entry, weights_file, pretrained, text_weight_path, "Reinstall it."
    )
    model = new_encoder(config)
    if path is not None:
        load_text_state(model, load_state_dict(path), path)
    model.eval()
    tokenizer = load_tokenizer(entry.cfg.preprocess.tokenizer, entry.cfg.weights.kind)
    return HFTextBackbone(entry.name, entry.cfg, weight_id, model, tokenizer).eval()


def text_weight_path(entry) -> Path:
    from .entry import locate_weights, unreachable
    from .registry import bundled_names

    source = entry.cfg.weights
    if source.kind in ("file", "package"):
        folder = locate_weights(source)
        found = weight_file_in(folder) if folder else None
        if found is None:
            why = "no model.safetensors or pytorch_model.bin there"
            raise unreachable(entry, why, bundled_names("text"))
        return found
    for filename in ("model.safetensors", "pytorch_model.bin"):
        cached = hf_hub_cached(source.location, filename)
        if cached:
            return Path(cached)
    path, why = hub_download(source.location, "model.safetensors")
    if path is None:
        raise unreachable(entry, why, bundled_names("text"))
    return Path(path)


def load_text_state(model: nn.Module, state: dict, path) -> None:
    """Strict load after dropping a task-model prefix (bert., model., ...) and unused poolers."""
    target = model.state_dict()
    prefix = next(
        (
            p
            for p in ("bert.", "model.", "transformer.", "roberta.")
            if state
            and all(
                k.startswith(p) or k.startswith(("cls.", "lm_head.", "classifier.")) for k in state
            )
        ),
        "",
    )
    state = {
        k.removeprefix(prefix): v for k, v in state.items() if k.removeprefix(prefix) in target
    }
    missing = [k for k in target if k not in state and not _optional(k)]
    wrong = [k for k, v in state.items() if target[k].shape != v.shape]
    if missing or wrong or not state:
        shown = ", ".join((wrong or missing)[:3])
        raise HeadstartError(
            f"Weights file '{path}' does not fit the {model.config.model_type} encoder "
            f"({len(missing)} missing, {len(wrong)} of wrong shape: {shown}). Pass a file saved "
            "from the same architecture."
        )
    model.load_state_dict(state, strict=False)


def _optional(key: str) -> bool:
    # Poolers and tied/position buffers are absent from many checkpoints and safe to leave as built.
    return key.startswith("pooler.") or key.endswith(("position_ids", "embed_tokens.weight"))


def load_tokenizer(location: str, kind: str):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(location, local_files_only=True)
    except Exception:  # no tokenizer files offline: reported when one is needed
        if kind == "hub" and hub_reachable():
            try:
                tok = AutoTokenizer.from_pretrained(location)
            except Exception:
                return None
        else:
            return None
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token  # GPT-style tokenizers have no pad token
    return tok
