"""`model:` section: backbone, FPN, anchors, RPN, RoI heads and input sizing.

Defaults are detectron2's FPN defaults; channel and anchor counts are derived from the backbone
by `resdet.build`, never written here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from backbones.norm import NORMS
from backbones.resnet import SHORTCUTS

#: The choices as the backbones define them (`Literal[tuple]` is `Literal[*tuple]`): the loader
#: checks values against these, with errors naming the key and the file.
Norm = Literal[NORMS]
Shortcut = Literal[SHORTCUTS]


@dataclass
class BackboneConfig:
    depth: int = 50
    norm: Norm = "FrozenBN"
    freeze_at: int = 2
    stride_in_1x1: bool = False
    shortcut: Shortcut = "B"
    res5_dilation: int = 1
    #: epsilon of the FrozenBN layers (torchvision's COCO_V1 detector weights were made with 0.0)
    frozen_bn_eps: float = 1e-5
    #: compute each FrozenBN as its convolution's weight and bias (backbones.norm.conv_norm): the
    #: same function and gradients up to float rounding, one pass less over every feature map
    fold_frozen_bn: bool = True
    #: what `backbones.weights.load_pretrained` accepts ("torchvision:resnet50", a path), or null
    weights: str | None = None


@dataclass
class PixelFormatConfig:
    """An explicit input format (see `backbones.spec.PixelFormat`)."""

    channel_order: Literal["RGB", "BGR"] = "RGB"
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass
class FPNConfig:
    in_features: list[str] = field(default_factory=lambda: ["res2", "res3", "res4", "res5"])
    out_channels: int = 256
    top_block: Literal["maxpool"] | None = "maxpool"


@dataclass
class InputConfig:
    """Resizing: short side `min_size_*` unless the long side would exceed `max_size_*`."""

    min_size_train: list[int] = field(default_factory=lambda: [640, 672, 704, 736, 768, 800])
    max_size_train: int = 1333
    min_size_test: int = 800
    max_size_test: int = 1333
    size_divisibility: int = 32
    #: the detector's memory layout, its one layout knob. true: NHWC batch (the preprocessor) and
    #: NHWC weights (`resdet.engine.prepare_model`), in training and inference; false: NCHW
    #: throughout; "inference": NHWC batch at inference only. On CPU (oneDNN, torch 2.14) NHWC
    #: convolutions run faster forward and slower backward, so "inference" is the fastest there
    #: (README "Performance"); GPU tensor cores usually favour true
    channels_last: bool | Literal["inference"] = "inference"


@dataclass
class AnchorConfig:
    #: per feature level of the RPN, the anchor sizes (sqrt of area) in input pixels
    sizes: list[list[float]] = field(default_factory=lambda: [[32], [64], [128], [256], [512]])
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    offset: float = 0.0
    round_to_int: bool = False
    #: torchvision's grid stride: padded image size // feature size (else the feature's stride)
    stride_from_image_size: bool = False


@dataclass
class RPNConfig:
    fg_iou: float = 0.7
    bg_iou: float = 0.3
    batch_size_per_image: int = 256
    positive_fraction: float = 0.5
    pre_nms_top_n_train: int = 2000
    pre_nms_top_n_test: int = 1000
    post_nms_top_n_train: int = 1000
    post_nms_top_n_test: int = 1000
    nms_thresh: float = 0.7
    min_box_size: float = 0.0
    box_coder_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    box_loss: Literal["smooth_l1", "l1"] = "smooth_l1"
    smooth_l1_beta: float = 0.0


@dataclass
class RoIHeadsConfig:
    pooler: Literal["align", "pool"] = "align"
    pooler_resolution: int = 7
    sampling_ratio: int = 0
    aligned: bool = True
    #: FPN box head: number and width of the fc layers (unused by the C4 head)
    num_fc: int = 2
    fc_dim: int = 1024
    #: C4 box head: a norm of `model.backbone.norm`'s kind after res5, before the pooling (MoCo's
    #: detection protocol, its Res5ROIHeadsExtraNorm); unused by the FPN head
    res5_extra_norm: bool = False
    fg_iou: float = 0.5
    bg_iou: float = 0.5
    batch_size_per_image: int = 512
    positive_fraction: float = 0.25
    box_coder_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_image: int = 100
    min_box_size: float = 0.0
    box_loss: Literal["smooth_l1", "l1"] = "smooth_l1"
    smooth_l1_beta: float = 0.0


@dataclass
class MaskHeadConfig:
    """Mask R-CNN's mask branch (`heads.roi.mask_head`); off = a box-only Faster R-CNN."""

    enabled: bool = False
    #: FPN: RoIAlign on p2..p5 for the mask head (C4 reads res5's 7x7 output of each box instead)
    pooler_resolution: int = 14
    sampling_ratio: int = 0
    aligned: bool = True
    #: FPN: 3x3 convolutions of `conv_dim` before the 2x deconvolution (the C4 head has none)
    num_conv: int = 4
    conv_dim: int = 256


@dataclass
class ModelConfig:
    arch: Literal["c4", "fpn"] = "fpn"
    #: foreground classes; null = from the dataset (torchvision's COCO models use 90: ids 1..90)
    num_classes: int | None = None
    #: the input format the weights expect; checked against what the weights record
    pixel_format: Literal["torchvision", "caffe"] | PixelFormatConfig = "torchvision"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    fpn: FPNConfig = field(default_factory=FPNConfig)
    input: InputConfig = field(default_factory=InputConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_heads: RoIHeadsConfig = field(default_factory=RoIHeadsConfig)
    mask_head: MaskHeadConfig = field(default_factory=MaskHeadConfig)
