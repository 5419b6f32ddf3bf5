"""Residual networks of He et al. (2015): ImageNet ResNet-18..152, the CIFAR nets, and plain twins.

Parameter and buffer names follow torchvision's ``ResNet`` (``conv1, bn1, layer1..layer4, fc``;
blocks ``conv1, bn1, conv2, bn2, [conv3, bn3], downsample.0/.1``) so torchvision and timm state
dicts load without renaming. Stages are exposed as features ``res2..res5`` (``layer1..layer4``).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

from backbones.norm import check_norm, conv_norm, fold_frozen_norms, freeze, make_norm
from backbones.spec import TORCHVISION_PIXELS, FeatureSpec, PixelFormat

SHORTCUTS = ("A", "B", "C")
#: Where option A's zero channels go: after the subsampled input ("end", fb.resnet.torch and the
#: default) or split evenly before and after it ("both", the pytorch_resnet_cifar10 reproduction).
PAD_PLACEMENTS = ("end", "both")


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(
        in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
    )


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class _Block(nn.Module):
    """Shortcut handling shared by both block types.

    ``shortcut`` is resolved per block by the stage builder: ``"none"`` (plain net), ``"identity"``,
    ``"pad"`` (option A: strided subsampling plus zero channels, no parameters) or ``"projection"``
    (1x1 conv + norm, stored as ``downsample.0/.1`` like torchvision). ``pad_placement`` (one of
    :data:`PAD_PLACEMENTS`) says where option A puts its zero channels; it is a plain attribute
    (no parameter or buffer), so a loader may switch it to match the weights it loads.
    """

    pad_placement: str = "end"

    def __init__(
        self,
        in_channels: int,
        channels: int,
        *,
        stride: int,
        dilation: int,
        norm: str,
        shortcut: str,
        stride_in_1x1: bool = False,
    ) -> None:
        """The block's convs and norms (`_init_convs`, registered first, in torchvision's order),
        then its shortcut."""
        super().__init__()
        out_channels = self._init_convs(
            in_channels, channels, stride, dilation, norm, stride_in_1x1
        )
        self._init_shortcut(in_channels, out_channels, stride, shortcut, norm)

    def _init_convs(
        self, in_channels: int, channels: int, stride: int, dilation: int, norm: str, s1x1: bool
    ) -> int:
        """Create conv1, bn1, ... (``s1x1``: ``stride_in_1x1``); return the output channels."""
        raise NotImplementedError

    def _init_shortcut(
        self, in_channels: int, out_channels: int, stride: int, shortcut: str, norm: str
    ) -> None:
        self.shortcut = shortcut
        self.stride = stride
        self.out_channels = out_channels
        self.downsample = (
            nn.Sequential(
                _conv1x1(in_channels, out_channels, stride), make_norm(norm, out_channels)
            )
            if shortcut == "projection"
            else None
        )
        self.relu = nn.ReLU(inplace=True)

    def _merge(self, x: Tensor, out: Tensor) -> Tensor:
        if self.shortcut == "projection":
            out = out + conv_norm(self.downsample[0], self.downsample[1], x)
        elif self.shortcut == "identity":
            out = out + x
        elif self.shortcut == "pad":
            sub = x[:, :, :: self.stride, :: self.stride]
            extra = self.out_channels - sub.shape[1]
            before = extra // 2 if self.pad_placement == "both" else 0
            # (N, Cin, H/s, W/s) -> (N, C, H/s, W/s), zero channels before and/or after
            out = out + F.pad(sub, (0, 0, 0, 0, before, extra - before))
        return self.relu(out)


class BasicBlock(_Block):
    """Two 3x3 convs (ResNet-18/34 and the CIFAR nets). (N, Cin, H, W) -> (N, C, H/s, W/s)."""

    expansion = 1

    def _init_convs(
        self, in_channels: int, channels: int, stride: int, dilation: int, norm: str, s1x1: bool
    ) -> int:
        self.conv1 = _conv3x3(in_channels, channels, stride, dilation)
        self.bn1 = make_norm(norm, channels)
        self.conv2 = _conv3x3(channels, channels, 1, dilation)
        self.bn2 = make_norm(norm, channels)
        return channels

    def last_norm(self) -> nn.Module:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(conv_norm(self.conv1, self.bn1, x))
        return self._merge(x, conv_norm(self.conv2, self.bn2, out))


class Bottleneck(_Block):
    """1x1 -> 3x3 -> 1x1 (ResNet-50/101/152). (N, Cin, H, W) -> (N, 4C, H/s, W/s).

    The stride sits on the 3x3 conv (torchvision, "ResNet v1.5") or, with ``stride_in_1x1``, on
    the first 1x1 conv as in the MSRA/caffe release and the paper's FLOP counts.
    """

    expansion = 4

    def _init_convs(
        self, in_channels: int, channels: int, stride: int, dilation: int, norm: str, s1x1: bool
    ) -> int:
        out_channels = channels * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if s1x1 else (1, stride)
        self.conv1 = _conv1x1(in_channels, channels, stride_1x1)
        self.bn1 = make_norm(norm, channels)
        self.conv2 = _conv3x3(channels, channels, stride_3x3, dilation)
        self.bn2 = make_norm(norm, channels)
        self.conv3 = _conv1x1(channels, out_channels)
        self.bn3 = make_norm(norm, out_channels)
        return out_channels

    def last_norm(self) -> nn.Module:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(conv_norm(self.conv1, self.bn1, x))
        out = self.relu(conv_norm(self.conv2, self.bn2, out))
        return self._merge(x, conv_norm(self.conv3, self.bn3, out))


def _block_shortcut(option: str, plain: bool, same_shape: bool) -> str:
    if plain:
        return "none"
    if option == "C":
        return "projection"
    if same_shape:
        return "identity"
    return "pad" if option == "A" else "projection"


class ResNetBase(nn.Module):
    """A stem followed by residual stages, exposing named multi-scale features.

    Input: float tensor (N, 3, H, W) in the model's ``pixel_format``. ``forward`` returns a dict
    ``{name: (N, C, H/stride, W/stride)}`` for every name in ``out_features`` (keys and shapes in
    ``output_specs``, highest resolution first), plus ``"logits"`` (N, num_classes) when a
    classifier is built. ``output_specs`` never lists ``"logits"``. Only the stages up to the
    deepest requested feature are built (all of them when there is a classifier).

    Attributes: ``out_features``, ``output_specs``, ``num_classes``, ``norm``, ``block``
    (``BasicBlock`` or ``Bottleneck``), ``stride_in_1x1``, ``depth`` and ``pixel_format`` (the
    input format the weights expect: the constructor's ``pixel_format`` until
    :func:`backbones.weights.load_pretrained` sets it from the weights).

    Frozen batch norms (``norm="FrozenBN"`` or stages frozen by ``freeze_at``) get
    ``frozen_bn_eps``; with ``fold_frozen_bn`` each is folded into its convolution
    (:func:`backbones.norm.conv_norm`: the same function up to float rounding). Both are set on
    the modules themselves, so a stage taken out with :meth:`take_stage` keeps them.

    Subclasses supply the stem and the stage plan; use :class:`ResNet` or :func:`cifar_resnet`.
    """

    def __init__(
        self,
        *,
        block: type[_Block],
        stem_channels: int,
        stem_stride: int,
        stages: Sequence[tuple[int, int, int, int]],
        out_features: Sequence[str],
        num_classes: int | None,
        norm: str,
        freeze_at: int,
        stride_in_1x1: bool,
        shortcut: str,
        plain: bool,
        zero_init_residual: bool,
        pixel_format: PixelFormat = TORCHVISION_PIXELS,
        frozen_bn_eps: float = 1e-5,
        fold_frozen_bn: bool = False,
        pad_placement: str = "end",
    ) -> None:
        """``stages``: per stage ``(channels, num_blocks, stride, dilation)``, named res2, ..."""
        super().__init__()
        check_norm(norm)
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut {shortcut!r}; allowed: {', '.join(SHORTCUTS)}")
        if pad_placement not in PAD_PLACEMENTS:
            raise ValueError(
                f"unknown pad_placement {pad_placement!r}; allowed: {', '.join(PAD_PLACEMENTS)}"
            )
        names = ("stem",) + tuple(f"res{i + 2}" for i in range(len(stages)))
        out_features = tuple(out_features)
        for f in out_features:
            if f not in names:
                raise ValueError(f"unknown feature {f!r}; allowed: {', '.join(names)}")
        if len(set(out_features)) != len(out_features):
            raise ValueError(f"out_features has duplicates: {out_features}")
        if not out_features and num_classes is None:
            raise ValueError("out_features is empty and num_classes is None: nothing to compute")
        if not 0 <= freeze_at <= len(names):
            raise ValueError(f"freeze_at must be in 0..{len(names)}, got {freeze_at}")
        if num_classes is not None and num_classes <= 0:
            raise ValueError(f"num_classes must be positive or None, got {num_classes}")

        self.out_features = tuple(sorted(out_features, key=names.index))
        self.num_classes = num_classes
        self.block = block
        self.norm = norm
        self.stride_in_1x1 = stride_in_1x1
        self.pixel_format: PixelFormat = pixel_format
        num_built = (
            len(stages)
            if num_classes is not None
            else max(names.index(f) for f in self.out_features)
        )

        specs = {"stem": FeatureSpec(stem_channels, stem_stride)}
        self._build_stem(stem_channels, norm)
        in_channels, stride_so_far = stem_channels, stem_stride
        self._stage_names: list[str] = []
        for i, (channels, num_blocks, stride, dilation) in enumerate(stages[:num_built]):
            blocks = []
            for b in range(num_blocks):
                s = stride if b == 0 else 1
                out_channels = channels * block.expansion
                kind = _block_shortcut(shortcut, plain, s == 1 and in_channels == out_channels)
                blocks.append(
                    block(
                        in_channels,
                        channels,
                        stride=s,
                        dilation=dilation,
                        norm=norm,
                        shortcut=kind,
                        stride_in_1x1=stride_in_1x1,
                    )
                )
                in_channels = out_channels
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            stride_so_far *= stride
            specs[names[i + 1]] = FeatureSpec(in_channels, stride_so_far)
            self._stage_names.append(names[i + 1])
        self.output_specs: dict[str, FeatureSpec] = {f: specs[f] for f in self.out_features}

        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(in_channels, num_classes)
        self._init_weights(zero_init_residual)
        self._freeze(freeze_at)
        for m in self.modules():
            if isinstance(m, FrozenBatchNorm2d):
                m.eps = frozen_bn_eps
            elif isinstance(m, _Block):
                m.pad_placement = pad_placement
        fold_frozen_norms(self, fold_frozen_bn)

    def _build_stem(self, channels: int, norm: str) -> None:
        raise NotImplementedError

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, _Block):
                    nn.init.zeros_(m.last_norm().weight)

    def _freeze(self, freeze_at: int) -> None:
        if freeze_at >= 1:
            self.bn1 = freeze(self.bn1)
            freeze(self.conv1)
        for stage in self._stage_names[: max(freeze_at - 1, 0)]:
            freeze(self.stage(stage))

    @property
    def pad_placement(self) -> str:
        """Where the option-A shortcuts put their zero channels (see :data:`PAD_PLACEMENTS`)."""
        placements = {m.pad_placement for m in self.modules() if isinstance(m, _Block)}
        return placements.pop() if len(placements) == 1 else "end"

    def set_pad_placement(self, placement: str) -> None:
        """Switch every block's option-A zero-channel placement (no weight changes shape)."""
        if placement not in PAD_PLACEMENTS:
            raise ValueError(
                f"unknown pad_placement {placement!r}; allowed: {', '.join(PAD_PLACEMENTS)}"
            )
        for m in self.modules():
            if isinstance(m, _Block):
                m.pad_placement = placement

    def stage(self, name: str) -> nn.Sequential:
        """The built stage ``name`` (``res2`` is ``layer1``)."""
        if name not in self._stage_names:
            raise ValueError(f"stage {name!r} is not built; built: {', '.join(self._stage_names)}")
        return getattr(self, f"layer{int(name[3:]) - 1}")

    def take_stage(self, name: str) -> nn.Sequential:
        """Remove the deepest built stage from this network and return it unchanged.

        Used by the C4 detector, which runs res5 as its RoI head. ``name`` must be the deepest
        built stage and deeper than every remaining output feature; it leaves ``out_features``
        and ``output_specs``. The returned ``nn.Sequential`` keeps its frozen/trainable state.
        """
        if self.num_classes is not None:
            raise ValueError("take_stage is not possible on a network with a classifier")
        if not self._stage_names or name != self._stage_names[-1]:
            raise ValueError(
                f"can only take the deepest built stage "
                f"{self._stage_names[-1] if self._stage_names else None!r}, "
                f"not {name!r}"
            )
        remaining = tuple(f for f in self.out_features if f != name)
        if not remaining:
            raise ValueError(f"taking {name!r} would leave no output feature")
        module = self.stage(name)
        delattr(self, f"layer{int(name[3:]) - 1}")
        self._stage_names.pop()
        self.out_features = remaining
        self.output_specs = {f: self.output_specs[f] for f in remaining}
        return module

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """(N, 3, H, W) -> {feature name: (N, C, H/stride, W/stride)} [+ "logits": (N, classes)]."""
        out: dict[str, Tensor] = {}
        x = self.maxpool(self.relu(conv_norm(self.conv1, self.bn1, x)))
        if "stem" in self.output_specs:
            out["stem"] = x
        for name in self._stage_names:
            x = self.stage(name)(x)
            if name in self.output_specs:
                out[name] = x
        if self.num_classes is not None:
            out["logits"] = self.fc(torch.flatten(self.avgpool(x), 1))
        return out


_IMAGENET_LAYOUTS: dict[int, tuple[type[_Block], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


class ResNet(ResNetBase):
    """ImageNet ResNet (paper Table 1). Stem: 7x7/2 conv + 3x3/2 max pool; features ``stem,
    res2..res5`` at strides 4, 4, 8, 16, 32 (res5 at 16 with ``res5_dilation=2``, whose 3x3 convs
    are all dilated as in detectron2's DC5).

    ``shortcut``: A = identity with strided subsampling and zero-padded channels (no parameters),
    B = projection only where the shape changes (torchvision), C = projection in every block.
    ``plain=True`` drops the shortcuts. ``freeze_at=k`` freezes the stem (k >= 1) and res2..res_k
    (detectron2 semantics; frozen batch norms become ``FrozenBatchNorm2d``). ``stride_in_1x1``
    only affects bottleneck blocks. ``zero_init_residual`` zeroes the last norm's scale in every
    block. ``pixel_format`` (the input the weights expect), ``frozen_bn_eps`` and
    ``fold_frozen_bn`` as in :class:`ResNetBase`. See :class:`ResNetBase` for the forward contract.
    """

    def __init__(
        self,
        depth: int,
        *,
        out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
        num_classes: int | None = None,
        norm: str = "BN",
        freeze_at: int = 0,
        stride_in_1x1: bool = False,
        shortcut: str = "B",
        res5_dilation: int = 1,
        plain: bool = False,
        zero_init_residual: bool = False,
        pixel_format: PixelFormat = TORCHVISION_PIXELS,
        frozen_bn_eps: float = 1e-5,
        fold_frozen_bn: bool = False,
    ) -> None:
        if depth not in _IMAGENET_LAYOUTS:
            raise ValueError(
                f"unknown ResNet depth {depth!r}; allowed: {', '.join(map(str, _IMAGENET_LAYOUTS))}"
            )
        if res5_dilation not in (1, 2):
            raise ValueError(f"res5_dilation must be 1 or 2, got {res5_dilation!r}")
        block, counts = _IMAGENET_LAYOUTS[depth]
        stages = [
            (64, counts[0], 1, 1),
            (128, counts[1], 2, 1),
            (256, counts[2], 2, 1),
            (512, counts[3], 2 // res5_dilation, res5_dilation),
        ]
        super().__init__(
            block=block,
            stem_channels=64,
            stem_stride=4,
            stages=stages,
            out_features=out_features,
            num_classes=num_classes,
            norm=norm,
            freeze_at=freeze_at,
            stride_in_1x1=stride_in_1x1,
            shortcut=shortcut,
            plain=plain,
            zero_init_residual=zero_init_residual,
            pixel_format=pixel_format,
            frozen_bn_eps=frozen_bn_eps,
            fold_frozen_bn=fold_frozen_bn,
        )
        self.depth = depth

    def _build_stem(self, channels: int, norm: str) -> None:
        self.conv1 = nn.Conv2d(3, channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = make_norm(norm, channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)


class CifarResNet(ResNetBase):
    """The paper's CIFAR-10 nets (Section 4.2): depth 6n+2, a 3x3 conv stem with 16 channels at
    stride 1 (no pool), then three stages of n basic blocks with 16/32/64 channels. Features:
    ``stem`` (16 ch, stride 1), ``res2`` (16, 1), ``res3`` (32, 2), ``res4`` (64, 4).

    ``pad_placement`` (option A only): the zero channels a shortcut adds where the width doubles
    go after the subsampled input (``"end"``, as fb.resnet.torch) or half before and half after
    it (``"both"``, as the pytorch_resnet_cifar10 reproduction). The same weights compute another
    function under the other placement; :func:`backbones.weights.load_pretrained` sets the
    placement a recognised checkpoint format was trained with.
    See :class:`ResNet` for the other options and :class:`ResNetBase` for the forward contract.
    """

    def __init__(
        self,
        depth: int,
        *,
        out_features: Sequence[str] = ("res2", "res3", "res4"),
        num_classes: int | None = 10,
        norm: str = "BN",
        freeze_at: int = 0,
        shortcut: str = "A",
        plain: bool = False,
        zero_init_residual: bool = False,
        pad_placement: str = "end",
    ) -> None:
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(
                f"unknown CIFAR ResNet depth {depth!r}; allowed: 6n+2 with n >= 1 "
                f"(paper: 20, 32, 44, 56, 110, 1202)"
            )
        n = (depth - 2) // 6
        super().__init__(
            block=BasicBlock,
            stem_channels=16,
            stem_stride=1,
            stages=[(16, n, 1, 1), (32, n, 2, 1), (64, n, 2, 1)],
            out_features=out_features,
            num_classes=num_classes,
            norm=norm,
            freeze_at=freeze_at,
            stride_in_1x1=False,
            shortcut=shortcut,
            plain=plain,
            zero_init_residual=zero_init_residual,
            pad_placement=pad_placement,
        )
        self.depth = depth

    def _build_stem(self, channels: int, norm: str) -> None:
        self.conv1 = nn.Conv2d(3, channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = make_norm(norm, channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()


def cifar_resnet(
    depth: int,
    *,
    shortcut: str = "A",
    plain: bool = False,
    num_classes: int | None = 10,
    norm: str = "BN",
    out_features: Sequence[str] = ("res2", "res3", "res4"),
    freeze_at: int = 0,
    zero_init_residual: bool = False,
    pad_placement: str = "end",
) -> CifarResNet:
    """The paper's CIFAR ResNet (or plain net) of ``depth`` = 6n+2; see :class:`CifarResNet`
    (``pad_placement``: where option A's zero channels go, ``"end"`` or ``"both"``)."""
    return CifarResNet(
        depth,
        out_features=out_features,
        num_classes=num_classes,
        norm=norm,
        freeze_at=freeze_at,
        shortcut=shortcut,
        plain=plain,
        zero_init_residual=zero_init_residual,
        pad_placement=pad_placement,
    )


def resnet18(**kwargs) -> ResNet:
    """ResNet-18; keywords as :class:`ResNet`."""
    return ResNet(18, **kwargs)


def resnet34(**kwargs) -> ResNet:
    """ResNet-34; keywords as :class:`ResNet`."""
    return ResNet(34, **kwargs)


def resnet50(**kwargs) -> ResNet:
    """ResNet-50; keywords as :class:`ResNet`."""
    return ResNet(50, **kwargs)


def resnet101(**kwargs) -> ResNet:
    """ResNet-101; keywords as :class:`ResNet`."""
    return ResNet(101, **kwargs)


def resnet152(**kwargs) -> ResNet:
    """ResNet-152; keywords as :class:`ResNet`."""
    return ResNet(152, **kwargs)
