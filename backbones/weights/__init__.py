"""Backbone weights: reading every supported file and source (`load`), the files themselves
(`files`), parameter names across releases (`names`), self-supervised layouts (`ssl_layouts`)."""

from backbones.weights.load import load_pretrained

__all__ = ["load_pretrained"]
