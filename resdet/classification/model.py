"""`model:` section -> a ResNet classifier (ImageNet-style or the paper's CIFAR nets,
or a plain twin)."""

from __future__ import annotations

from backbones.resnet import ResNet, ResNetBase, cifar_resnet
from backbones.weights import load_pretrained
from resdet.config.classification import ClsModelConfig


def build_classifier(cfg: ClsModelConfig, num_classes: int) -> ResNetBase:
    """A network whose `forward(x [N, 3, H, W])` returns `{"logits": [N, num_classes]}` only.

    With `cfg.weights`, the weights (and pixel format) are loaded; a classifier of another class
    count keeps its fresh `fc` (fine-tuning on a new label set).
    """
    if cfg.arch == "cifar":
        net = cifar_resnet(
            cfg.depth,
            shortcut=cfg.shortcut,
            plain=cfg.plain,
            num_classes=num_classes,
            norm=cfg.norm,
            out_features=(),
            zero_init_residual=cfg.zero_init_residual,
        )
    else:
        net = ResNet(
            cfg.depth,
            out_features=(),
            num_classes=num_classes,
            norm=cfg.norm,
            stride_in_1x1=cfg.stride_in_1x1,
            shortcut=cfg.shortcut,
            plain=cfg.plain,
            zero_init_residual=cfg.zero_init_residual,
        )
    if cfg.weights is not None:
        load_pretrained(net, cfg.weights)
    return net
