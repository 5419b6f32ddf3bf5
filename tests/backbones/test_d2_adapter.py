"""resdet backbones inside detectron2: registered builders that read detectron2's own config keys,
pixel settings for the loaded weights, picklable wrappers, detectron2's size divisibility.

Every builder test runs twice: against real detectron2 when it is importable (skipped with the
reason otherwise: it is not on PyPI), and against ``d2_standin``, which mirrors the few detectron2
names the adapter uses, so the adapter's own logic is tested on every machine.
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import sys
from types import SimpleNamespace

import d2_standin
import pytest
import torch
import torchvision
from torch import nn

from backbones.interop.detectron2_config import (
    check_pixel_settings,
    detectron2_pixel_settings,
    fpn_kwargs,
    resnet_kwargs,
)
from backbones.spec import CAFFE_PIXELS, TORCHVISION_PIXELS


@pytest.fixture(params=["detectron2", "stand-in"])
def d2(request, monkeypatch):
    """``config`` and ``modeling`` of real detectron2 or of the stand-in, with the adapter
    imported against them."""
    if request.param == "detectron2":
        if importlib.util.find_spec("detectron2") is None:
            pytest.skip("detectron2 is not installed (not on PyPI: build it from source)")
    else:
        for name, module in d2_standin.modules().items():
            monkeypatch.setitem(sys.modules, name, module)
    sys.modules.pop("backbones.interop.detectron2", None)
    yield SimpleNamespace(
        config=importlib.import_module("detectron2.config"),
        modeling=importlib.import_module("detectron2.modeling"),
        adapter=importlib.import_module("backbones.interop.detectron2"),
    )
    sys.modules.pop("backbones.interop.detectron2", None)


def _cfg(d2, name: str, **resnets):
    cfg = d2.config.get_cfg()
    d2.adapter.add_resdet_config(cfg)
    cfg.MODEL.BACKBONE.NAME = name
    for key, value in resnets.items():
        setattr(cfg.MODEL.RESNETS, key, value)
    return cfg


def _fpn_cfg(d2):
    """detectron2's Base-RCNN-FPN keys, on a small ResNet-18."""
    cfg = _cfg(
        d2,
        "build_resdet_fpn_backbone",
        DEPTH=18,
        RES2_OUT_CHANNELS=64,
        OUT_FEATURES=["res2", "res3", "res4", "res5"],
    )
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    return cfg


def test_fpn_builder_reads_detectron2_keys(d2):
    d2.adapter.register_detectron2()
    d2.adapter.register_detectron2()
    backbone = d2.modeling.build_backbone(_fpn_cfg(d2))
    assert isinstance(backbone, d2.modeling.Backbone)
    assert backbone.size_divisibility == 32
    shapes = backbone.output_shape()
    assert {k: (s.channels, s.stride) for k, s in shapes.items()} == {
        "p2": (32, 4), "p3": (32, 8), "p4": (32, 16), "p5": (32, 32), "p6": (32, 64),
    }  # fmt: skip
    with torch.no_grad():
        out = backbone(torch.zeros(1, 3, 64, 96))
    for name, s in shapes.items():
        assert out[name].shape[1:] == (s.channels, -(-64 // s.stride), -(-96 // s.stride))
    bottom_up = backbone.body.bottom_up
    frozen = (bottom_up.conv1, bottom_up.layer1)  # FREEZE_AT: 2
    assert not any(p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in bottom_up.layer2.parameters())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())  # FrozenBN


def test_c4_builder_is_detectron2s_resnet(d2):
    d2.adapter.register_detectron2()
    backbone = d2.modeling.build_backbone(_cfg(d2, "build_resdet_backbone"))
    assert backbone.size_divisibility == 0
    assert {k: (s.channels, s.stride) for k, s in backbone.output_shape().items()} == {
        "res4": (1024, 16)
    }
    net = backbone.body
    assert net.layer2[0].conv1.stride == (2, 2)  # STRIDE_IN_1X1: True, MSRA style
    assert not hasattr(net, "layer4")  # detectron2's Res5ROIHeads builds res5


def test_wrapped_backbone_pickles(d2):
    d2.adapter.register_detectron2()
    backbone = d2.modeling.build_backbone(_fpn_cfg(d2)).eval()
    again = pickle.loads(pickle.dumps(backbone))
    assert type(again) is type(backbone) and again.size_divisibility == 32
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        want, got = backbone(x), again(x)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0)


def test_builder_refuses_pixels_the_weights_do_not_expect(d2, tmp_path):
    d2.adapter.register_detectron2()
    torch.manual_seed(0)
    source = torchvision.models.resnet18()
    path = tmp_path / "resnet18_torchvision.pth"
    torch.save(source.state_dict(), path)
    cfg = _fpn_cfg(d2)
    cfg.MODEL.RESDET.WEIGHTS = str(path)
    with pytest.raises(ValueError, match=r"INPUT.FORMAT=BGR \(needs RGB\).*MODEL.PIXEL_MEAN"):
        d2.modeling.build_backbone(cfg)
    settings = detectron2_pixel_settings(TORCHVISION_PIXELS)
    cfg.merge_from_list([x for kv in settings.items() for x in kv])
    backbone = d2.modeling.build_backbone(cfg)
    assert torch.equal(backbone.body.bottom_up.conv1.weight, source.conv1.weight)
    assert backbone.body.pixel_format == TORCHVISION_PIXELS


def test_pixel_settings_by_hand():
    assert detectron2_pixel_settings(CAFFE_PIXELS) == {
        "INPUT.FORMAT": "BGR",
        "MODEL.PIXEL_MEAN": [103.53, 116.28, 123.675],
        "MODEL.PIXEL_STD": [1.0, 1.0, 1.0],
    }
    # torchvision: mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) of 0..1 RGB, x255.
    assert detectron2_pixel_settings(TORCHVISION_PIXELS) == {
        "INPUT.FORMAT": "RGB",
        "MODEL.PIXEL_MEAN": [123.675, 116.28, 103.53],
        "MODEL.PIXEL_STD": [58.395, 57.12, 57.375],
    }
    cfg = d2_standin.get_cfg()  # detectron2's defaults are the MSRA caffe pixels
    check_pixel_settings(cfg, CAFFE_PIXELS, "R-50.pkl")
    with pytest.raises(ValueError) as e:
        check_pixel_settings(cfg, TORCHVISION_PIXELS, "torchvision:resnet50")
    message = str(e.value)
    assert "torchvision:resnet50" in message and "MODEL.PIXEL_STD=[1.0, 1.0, 1.0]" in message
    assert "needs [58.395, 57.12, 57.375]" in message


def test_resnet_and_fpn_kwargs_from_detectron2_defaults():
    cfg = d2_standin.get_cfg()
    assert resnet_kwargs(cfg) == {
        "depth": 50,
        "out_features": ("res4",),
        "norm": "FrozenBN",
        "freeze_at": 2,
        "stride_in_1x1": True,
        "res5_dilation": 1,
    }
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    assert fpn_kwargs(cfg) == {
        "in_features": ("res2", "res3", "res4", "res5"),
        "out_channels": 256,
        "norm": "",
        "top_block": "maxpool",
    }


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("NUM_GROUPS", 32, "MODEL.RESNETS.NUM_GROUPS=32"),
        ("WIDTH_PER_GROUP", 4, "MODEL.RESNETS.WIDTH_PER_GROUP=4"),
        ("STEM_OUT_CHANNELS", 32, "MODEL.RESNETS.STEM_OUT_CHANNELS=32"),
        ("DEPTH", 18, r"RES2_OUT_CHANNELS=256 .*64 for depth 18"),
        ("DEFORM_ON_PER_STAGE", [False, True, True, True], "DEFORM_ON_PER_STAGE"),
        ("NORM", "naiveSyncBN", "MODEL.RESNETS.NORM='naiveSyncBN'"),
    ],
)
def test_unsupported_detectron2_keys_are_named(key, value, match):
    cfg = d2_standin.get_cfg()
    setattr(cfg.MODEL.RESNETS, key, value)
    with pytest.raises(ValueError, match=match):
        resnet_kwargs(cfg)


def test_unsupported_fpn_fuse_type_is_named():
    cfg = d2_standin.get_cfg()
    cfg.MODEL.FPN.FUSE_TYPE = "avg"
    with pytest.raises(ValueError, match="MODEL.FPN.FUSE_TYPE='avg'"):
        fpn_kwargs(cfg)


def _zoo_config(name: str):
    """detectron2's own model-zoo config `COCO-Detection/<name>` on CPU without its weights, and our
    adapter imported against real detectron2 (not the stand-in's import of it), registered;
    skips without detectron2."""
    if importlib.util.find_spec("detectron2") is None:
        pytest.skip("detectron2 is not installed (not on PyPI: build it from source)")
    import os

    import detectron2
    from detectron2.config import get_cfg

    sys.modules.pop("backbones.interop.detectron2", None)
    adapter = importlib.import_module("backbones.interop.detectron2")
    adapter.register_detectron2()
    zoo = os.path.join(os.path.dirname(detectron2.__file__), "model_zoo", "configs")
    cfg = get_cfg()
    adapter.add_resdet_config(cfg)
    cfg.merge_from_file(os.path.join(zoo, "COCO-Detection", name))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    return adapter, cfg


def test_retinanet_with_our_backbone_is_detectron2s_retinanet():
    """detectron2's own RetinaNet config with `build_resdet_retinanet_backbone`: the backbone has
    detectron2's output shapes and parameter count (its `build_retinanet_resnet_fpn_backbone`
    built from the same config), and the whole RetinaNet trains two steps and infers."""
    adapter, cfg = _zoo_config("retinanet_R_50_FPN_1x.yaml")
    from detectron2.layers import ShapeSpec
    from detectron2.modeling import build_model
    from detectron2.modeling.backbone.fpn import build_retinanet_resnet_fpn_backbone
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    shape = ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN))
    theirs = build_retinanet_resnet_fpn_backbone(cfg, shape)
    ours = adapter.build_resdet_retinanet_backbone(cfg, shape)
    assert {k: (s.channels, s.stride) for k, s in ours.output_shape().items()} == {
        k: (s.channels, s.stride) for k, s in theirs.output_shape().items()
    }
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(theirs)
    x = torch.rand(1, 3, 96, 128)
    assert {k: v.shape for k, v in ours(x).items()} == {k: v.shape for k, v in theirs(x).items()}

    cfg.MODEL.BACKBONE.NAME = "build_resdet_retinanet_backbone"
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model.backbone, adapter.ResdetBackbone)
    instances = Instances((96, 128))
    instances.gt_boxes = Boxes(torch.tensor([[10.0, 12.0, 60.0, 70.0]]))
    instances.gt_classes = torch.tensor([3])
    batch = [{"image": torch.rand(3, 96, 128) * 255, "instances": instances}]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()
    for step in range(2):
        with EventStorage(step):  # where detectron2's models log during training
            losses = model(batch)
        total = sum(losses.values())
        assert torch.isfinite(total)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": torch.rand(3, 96, 128) * 255}])
    assert out["instances"].image_size == (96, 128)


def test_c4_res5_gets_the_sources_res5(tmp_path):
    """C4 with `build_resdet_backbone`: detectron2's `Res5ROIHeads` builds res5 itself, randomly
    initialised; `load_res5_weights` puts the source's res5 (torchvision's layer4) there, tensor by
    tensor, and the backbone has the source's res2..res4."""
    adapter, cfg = _zoo_config("faster_rcnn_R_50_C4_1x.yaml")
    from detectron2.modeling import build_model

    torch.manual_seed(0)
    source = torchvision.models.resnet50()
    weights = tmp_path / "r50.pth"
    torch.save(source.state_dict(), weights)
    cfg.MODEL.BACKBONE.NAME = "build_resdet_backbone"
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False  # torchvision's convention
    cfg.MODEL.RESDET.WEIGHTS = str(weights)
    cfg.INPUT.FORMAT = "RGB"
    cfg.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]
    cfg.MODEL.PIXEL_STD = [58.395, 57.12, 57.375]
    model = build_model(cfg)
    res5 = model.roi_heads.res5
    theirs = source.layer4
    assert not torch.equal(res5[0].conv1.weight, theirs[0].conv1.weight)  # random before
    assert adapter.load_res5_weights(model, str(weights)) == len(res5.state_dict())
    for i, block in enumerate(theirs):
        ours = res5[i]
        torch.testing.assert_close(ours.conv1.weight, block.conv1.weight, rtol=0, atol=0)
        torch.testing.assert_close(
            ours.conv3.norm.running_var, block.bn3.running_var, rtol=0, atol=0
        )
    torch.testing.assert_close(
        res5[0].shortcut.weight, theirs[0].downsample[0].weight, rtol=0, atol=0
    )
    body = model.backbone.body
    torch.testing.assert_close(body.layer3[0].conv2.weight, source.layer3[0].conv2.weight)
