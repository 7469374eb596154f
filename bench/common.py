"""Shared pieces of the benchmarks: data locations and the plain baseline model."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def plain_lite0():
    """(model, transform): timm tf_efficientnet_lite0 with the bundled weights, fp32, NCHW,
    timm's own eval transform: the recipe a user would write by hand."""
    import timm
    from timm.data import create_transform, resolve_data_config

    from headstart.zoo import get_entry
    from headstart.zoo.entry import locate_weights
    from headstart.zoo.image import efficientnet_pytorch_to_timm
    from headstart.zoo.weights import load_state_dict

    model = timm.create_model("tf_efficientnet_lite0").eval()
    state = load_state_dict(locate_weights(get_entry("efficientnet_lite0").cfg.weights))
    model.load_state_dict(efficientnet_pytorch_to_timm(state, model))
    model.reset_classifier(0)
    return model, create_transform(**resolve_data_config(model=model))
