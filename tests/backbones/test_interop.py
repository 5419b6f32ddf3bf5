"""The same backbone inside torchvision detectors, detectron2, mmdetection and timm-style code."""

from __future__ import annotations

import importlib.util
import pickle
import subprocess
import sys

import pytest
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from backbones.fpn import FPN
from backbones.interop.mmdet import MMDetResNet, register_mmdet_backbone
from backbones.interop.timm import FeatureInfo, feature_info
from backbones.interop.torchvision import TorchvisionBackbone
from backbones.resnet import ResNet
from backbones.spec import CAFFE_PIXELS, TORCHVISION_PIXELS, FeatureSpec


def _targets(n: int, masks: bool = False) -> list[dict[str, torch.Tensor]]:
    out = []
    for i in range(n):
        t = {
            "boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [20.0, 10.0, 60.0, 30.0]]),
            "labels": torch.tensor([1, 2]),
        }
        if masks:
            m = torch.zeros(2, 64, 64, dtype=torch.uint8)
            m[0, 6:50, 4:40] = 1
            m[1, 10:30, 20:60] = 1
            t["masks"] = m
        out.append(t)
    return out


# Few proposals and detections: the point is that the wiring works, not the numbers.
SMALL = dict(
    min_size=64,
    max_size=64,
    rpn_pre_nms_top_n_train=100,
    rpn_post_nms_top_n_train=50,
    rpn_pre_nms_top_n_test=50,
    rpn_post_nms_top_n_test=20,
    rpn_batch_size_per_image=32,
    box_batch_size_per_image=16,
    box_detections_per_img=5,
)


def _train_step_and_eval(model: nn.Module, masks: bool) -> None:
    torch.manual_seed(0)
    images = [torch.rand(3, 64, 64), torch.rand(3, 56, 64)]
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    model.train()
    losses = model(images, _targets(2, masks))
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    torch.optim.SGD(params, lr=0.01).step()
    assert any(not torch.equal(a, b) for a, b in zip(before, params))
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and {"boxes", "scores", "labels"} <= set(out[0])


def test_resnet50_fpn_in_torchvision_faster_rcnn():
    body = FPN(ResNet(50, norm="FrozenBN", freeze_at=2))
    backbone = TorchvisionBackbone(body)
    assert backbone.out_channels == 256
    model = FasterRCNN(backbone, num_classes=3, **SMALL, **backbone.transform_kwargs())
    assert model.backbone.body is body
    _train_step_and_eval(model, masks=False)
    assert not any(p.requires_grad for p in body.bottom_up.layer1.parameters())


def test_resnet18_fpn_in_torchvision_mask_rcnn():
    backbone = TorchvisionBackbone(FPN(ResNet(18), out_channels=32))
    model = MaskRCNN(backbone, num_classes=3, **SMALL)
    _train_step_and_eval(model, masks=True)


class _Recorder(nn.Module):
    """A one-output backbone that records the tensor it is given."""

    def __init__(self, pixel_format):
        super().__init__()
        self.pixel_format = pixel_format
        self.output_specs = {"res4": FeatureSpec(3, 1)}
        self.seen = None

    def forward(self, x):
        self.seen = x
        return {"res4": x}


@pytest.mark.parametrize("pixels", [TORCHVISION_PIXELS, CAFFE_PIXELS])
def test_transform_kwargs_reproduce_the_pixel_format(pixels):
    image = torch.rand(3, 8, 8)
    adapter = TorchvisionBackbone(_Recorder(pixels))
    normalised = GeneralizedRCNNTransform(8, 8, **adapter.transform_kwargs()).normalize(image)
    out = adapter(normalised[None])
    assert list(out) == ["0"]
    x = image.flip(0) if pixels.channel_order == "BGR" else image
    want = (x * pixels.scale - torch.tensor(pixels.mean)[:, None, None]) / torch.tensor(pixels.std)[
        :, None, None
    ]
    assert torch.allclose(adapter.body.seen[0], want, atol=1e-4)


def test_torchvision_adapter_bad_input():
    with pytest.raises(ValueError, match="one channel count"):
        TorchvisionBackbone(ResNet(18))
    with pytest.raises(ValueError, match="index, names"):
        TorchvisionBackbone(FPN(ResNet(18)), keys="levels")
    adapter = TorchvisionBackbone(FPN(ResNet(18)), keys="names").eval()
    with torch.no_grad():
        assert list(adapter(torch.zeros(1, 3, 32, 32))) == ["p2", "p3", "p4", "p5", "p6"]


def test_feature_info_is_timm_style():
    net = ResNet(50, out_features=("stem", "res3", "res5"))
    info = feature_info(net)
    assert info.channels() == [64, 512, 2048] and info.reduction() == [4, 8, 32]
    assert info.channels(1) == 512 and info.reduction([0, 2]) == [4, 32]
    assert info.module_name() == ["stem", "res3", "res5"] and len(info) == 3
    assert info.get_dicts()[2] == {"module": "res5", "num_chs": 2048, "reduction": 32}
    with pytest.raises(ValueError, match="must not decrease"):
        FeatureInfo({"a": FeatureSpec(8, 8), "b": FeatureSpec(8, 4)})


def test_importing_backbones_leaves_detectron2_and_mmdet_alone():
    code = (
        "import sys, backbones.resnet, backbones.fpn, backbones.weights.load, backbones.interop; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('detectron2', 'mmdet', 'mmengine', 'timm', 'heads', 'resdet')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(importlib.util.find_spec("mmdet") is None, reason="mmdet is not installed")
def test_mmdet_registration():

    try:
        cls = register_mmdet_backbone()
    except ImportError as e:  # mmcv-lite: mmdet imports, its registry does not
        pytest.skip(str(e))
    assert register_mmdet_backbone() is cls
    from mmdet.registry import MODELS

    net = MODELS.build(dict(type="ResdetResNet", depth=18))
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 64, 64))
    assert [t.shape[1] for t in out] == [64, 128, 256, 512]


def test_mmdet_backbone_pickles_without_mmdet():
    net = MMDetResNet(18, out_features=("res3", "res5")).eval()
    again = pickle.loads(pickle.dumps(net))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        want, got = net(x), again(x)
    assert [t.shape[1] for t in got] == [128, 512]
    for a, b in zip(want, got):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
