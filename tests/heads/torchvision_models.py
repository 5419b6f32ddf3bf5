"""Seeded torchvision R50-FPN detectors with non-trivial frozen statistics, for the parity tests."""

import torch
from torchvision.models import resnet50
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection._utils import overwrite_eps
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import FrozenBatchNorm2d


def seeded_torchvision(
    cls: type[FasterRCNN] | type[MaskRCNN], min_size: int, max_size: int
) -> FasterRCNN:
    """What `fasterrcnn_resnet50_fpn` / `maskrcnn_resnet50_fpn(weights=COCO_V1)` build (frozen BN
    with epsilon 0, 3 trainable layers, 91 classes), in eval mode, with random frozen-BN statistics
    and class scores spread so that many detections pass the 0.05 threshold, with few ties."""
    torch.manual_seed(0)
    tv = cls(
        _resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3),
        num_classes=91,
        min_size=min_size,
        max_size=max_size,
    ).eval()
    overwrite_eps(tv, 0.0)
    for name, buf in tv.named_buffers():
        if name.endswith("running_mean"):
            buf.normal_(0.0, 0.1)
        elif name.endswith("running_var"):
            buf.uniform_(0.5, 2.0)
        elif name.endswith("weight"):
            buf.uniform_(0.5, 1.5)
    torch.nn.init.normal_(tv.roi_heads.box_predictor.cls_score.weight, std=0.003)
    return tv
