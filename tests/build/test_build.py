"""Every detection recipe builds from YAML; bad YAML is refused;
checkpoints load with their pixels."""

import pickle
import typing
from pathlib import Path

import pytest
import torch

from backbones.resnet import ResNet
from backbones.spec import CAFFE_PIXELS, TORCHVISION_PIXELS
from heads.meta_arch.rcnn import FasterRCNN
from resdet import build_model, load_checkpoint, load_config
from resdet.build import ARCHITECTURES
from resdet.config import ConfigError
from resdet.config.model import ModelConfig
from tests.heads.tiny_detectors import tiny_config

CONFIGS = Path(__file__).parents[2] / "configs"
DETECTION_CONFIGS = sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.startswith("cls_"))


def test_detection_configs_exist():
    names = {p.name for p in DETECTION_CONFIGS}
    assert {
        "frcnn_r101_coco.yaml",
        "frcnn_r101_voc0712.yaml",
        "frcnn_r50_fpn_coco.yaml",
        "frcnn_r101_fpn_coco.yaml",
        "torchvision_frcnn_r50_fpn_coco.yaml",
    } <= names


@pytest.mark.parametrize("path", DETECTION_CONFIGS, ids=lambda p: p.name)
def test_config_loads_and_builds(path):
    cfg = load_config(path)
    model = build_model(cfg, num_classes=3, load_weights=False)
    assert isinstance(model, FasterRCNN) and model.num_classes == 3
    specs = model.backbone.output_specs
    head = model.rpn.head
    # channel and anchor counts come from the backbone and the anchor lists, not from the YAML
    assert head.conv.in_channels == specs[model.rpn_features[0]].channels
    per_location = len(cfg.model.anchors.sizes[0]) * len(cfg.model.anchors.aspect_ratios)
    assert head.cls_logits.out_channels == per_location
    assert model.roi_heads.box_predictor.cls_score.out_features == 4
    if cfg.model.arch == "c4":
        assert model.rpn_features == ["res4"] and specs["res4"].stride == 16
        assert model.roi_heads.box_predictor.cls_score.in_features == (
            2048 if cfg.model.backbone.depth >= 50 else 512
        )
    else:
        assert model.rpn_features == ["p2", "p3", "p4", "p5", "p6"] and model.roi_features == [
            "p2",
            "p3",
            "p4",
            "p5",
        ]


def test_paper_recipes_follow_the_paper():
    coco, voc = (
        load_config(CONFIGS / "frcnn_r101_coco.yaml"),
        load_config(CONFIGS / "frcnn_r101_voc0712.yaml"),
    )
    for cfg in (coco, voc):
        m = cfg.model
        assert (m.arch, m.backbone.depth, m.backbone.norm, m.backbone.freeze_at) == (
            "c4",
            101,
            "FrozenBN",
            2,
        )
        assert (
            m.backbone.stride_in_1x1
            and m.pixel_format == "caffe"
            and m.backbone.weights.endswith("R-101.pkl")
        )
        assert (m.input.min_size_test, m.input.max_size_test, m.rpn.post_nms_top_n_test) == (
            600,
            1000,
            300,
        )
    assert coco.model.anchors.sizes == [[64, 128, 256, 512]] and voc.model.anchors.sizes == [
        [128, 256, 512]
    ]


@pytest.mark.parametrize(
    "text,needle",
    [
        ("model:\n  rpn:\n    nms_tresh: 0.5\n", "model.rpn.nms_tresh"),
        ("model:\n  anchors:\n    sizes: big\n", "model.anchors.sizes"),
        ("model:\n  roi_heads:\n    pooler: roi_warp\n", "model.roi_heads.pooler"),
        ("model:\n  input:\n    min_size_test: 800.5\n", "model.input.min_size_test"),
        ("model: !!python/object/apply:os.system [echo hi]\n", "python"),
    ],
)
def test_bad_yaml_refused_naming_file_and_key(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(f"_base_: {CONFIGS / 'frcnn_r50_fpn_coco.yaml'}\n" + text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_unknown_arch_is_a_clear_error():
    """The loader refuses an arch outside `ModelConfig.arch`'s choices, which are exactly the
    architectures `build_model` knows; a config changed after loading is refused by the build."""
    choices = typing.get_args(typing.get_type_hints(ModelConfig)["arch"])
    assert set(choices) == set(ARCHITECTURES)
    with pytest.raises(ConfigError, match=r"model\.arch"):
        tiny_config("fpn", extra=["model.arch=retinanet"])
    cfg = tiny_config("fpn")
    cfg.model.arch = "retinanet"
    with pytest.raises(ValueError, match=r"model\.arch 'retinanet' .*\(c4, fpn\)"):
        build_model(cfg, num_classes=3)


def test_num_classes_required():
    with pytest.raises(ValueError, match="num_classes"):
        build_model(load_config(CONFIGS / "frcnn_r50_fpn_coco.yaml"), load_weights=False)
    assert (
        build_model(load_config(CONFIGS / "torchvision_frcnn_r50_fpn_coco.yaml")).num_classes == 90
    )


def _backbone_checkpoint(path, pixels):
    torch.manual_seed(1)
    net = ResNet(18, norm="FrozenBN")
    torch.save(
        {
            "format": "resdet",
            "kind": "backbone",
            "model": net.state_dict(),
            "pixel_format": pixels.to_dict(),
        },
        path,
    )
    return net


def test_backbone_weights_load_and_pixel_format_is_checked(tmp_path):
    path = tmp_path / "r18.pth"
    net = _backbone_checkpoint(path, TORCHVISION_PIXELS)
    model = build_model(tiny_config("c4", 18, [f"model.backbone.weights={path}"]), num_classes=3)
    # res4 stays in the backbone, res5 moves into the RoI head: both loaded
    assert torch.equal(model.backbone.layer3[0].conv1.weight, net.layer3[0].conv1.weight)
    assert torch.equal(model.roi_heads.box_head.res5[1].conv2.weight, net.layer4[1].conv2.weight)
    _backbone_checkpoint(path, CAFFE_PIXELS)
    with pytest.raises(ValueError, match="pixel"):
        build_model(tiny_config("c4", 18, [f"model.backbone.weights={path}"]), num_classes=3)


def test_own_checkpoint_round_trip_and_pixel_check(tmp_path):
    torch.manual_seed(0)
    a = build_model(tiny_config("fpn"), num_classes=3).eval()
    path = tmp_path / "det.pth"
    torch.save(
        {
            "format": "resdet",
            "kind": "detector",
            "model": a.state_dict(),
            "pixel_format": a.pixel_format.to_dict(),
            "config": {},
        },
        path,
    )
    torch.manual_seed(1)
    b = build_model(tiny_config("fpn"), num_classes=3).eval()
    assert load_checkpoint(b, path) == "resdet"
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    caffe = build_model(tiny_config("fpn", extra=["model.pixel_format=caffe"]), num_classes=3)
    with pytest.raises(ValueError, match="pixels"):
        load_checkpoint(caffe, path)
    wrong = build_model(tiny_config("fpn"), num_classes=5)
    with pytest.raises(ValueError, match="cls_score"):
        load_checkpoint(wrong, path)


def test_unsafe_checkpoint_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"model": Evil()}, path)
    with pytest.raises(ValueError, match="refusing"):
        load_checkpoint(build_model(tiny_config("fpn"), num_classes=3), path)
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(ValueError, match="refusing"):
        load_checkpoint(build_model(tiny_config("fpn"), num_classes=3), pkl)


def _to_detectron2(name: str) -> str:
    """Our detectors' parameter names written the way detectron2 names them (hand-kept table)."""
    import re

    rules = [
        (r"^backbone\.conv1\.", "backbone.stem.conv1."),
        (r"^backbone\.bn1\.", "backbone.stem.conv1.norm."),
        (r"^backbone\.layer(\d)\.", lambda m: f"backbone.res{int(m.group(1)) + 1}."),
        (r"^roi_heads\.box_head\.res5\.", "roi_heads.res5."),
        (r"^roi_heads\.box_head\.norm\.", "roi_heads.res5.norm."),  # MoCo's extra norm
        (r"^backbone\.bottom_up\.conv1\.", "backbone.bottom_up.stem.conv1."),
        (r"^backbone\.bottom_up\.bn1\.", "backbone.bottom_up.stem.conv1.norm."),
        (
            r"^backbone\.bottom_up\.layer(\d)\.",
            lambda m: f"backbone.bottom_up.res{int(m.group(1)) + 1}.",
        ),
        (r"\.downsample\.0\.", ".shortcut."),
        (r"\.downsample\.1\.", ".shortcut.norm."),
        (r"\.bn(\d)\.", r".conv\1.norm."),
        (
            r"^backbone\.lateral_convs\.(\d)\.0\.",
            lambda m: f"backbone.fpn_lateral{int(m.group(1)) + 2}.",
        ),
        (
            r"^backbone\.output_convs\.(\d)\.0\.",
            lambda m: f"backbone.fpn_output{int(m.group(1)) + 2}.",
        ),
        (r"^rpn\.head\.conv\.", "proposal_generator.rpn_head.conv."),
        (r"^rpn\.head\.cls_logits\.", "proposal_generator.rpn_head.objectness_logits."),
        (r"^rpn\.head\.bbox_pred\.", "proposal_generator.rpn_head.anchor_deltas."),
        (r"^roi_heads\.box_head\.fc6\.", "roi_heads.box_head.fc1."),
        (r"^roi_heads\.box_head\.fc7\.", "roi_heads.box_head.fc2."),
    ]
    for pattern, repl in rules:
        name = re.sub(pattern, repl, name)
    return name


@pytest.mark.parametrize(
    "arch,suffix,extra",
    [
        ("fpn", ".pth", []),
        ("fpn", ".pkl", []),
        ("c4", ".pkl", []),
        # MoCo's detection protocol: BN everywhere and Res5ROIHeadsExtraNorm's `roi_heads.res5.norm`
        ("c4", ".pth", ["model.backbone.norm=BN", "model.roi_heads.res5_extra_norm=true"]),
        # Mask R-CNN: roi_heads.mask_head.{mask_fcn1..4, deconv, predictor} (C4: no mask_fcn)
        ("fpn", ".pth", ["model.mask_head.enabled=true"]),
        ("c4", ".pkl", ["model.mask_head.enabled=true"]),
    ],
)
def test_detectron2_checkpoint_loads(tmp_path, arch, suffix, extra):
    torch.manual_seed(0)
    cfg_extra = ["model.pixel_format=caffe", *extra]
    src = build_model(tiny_config(arch, extra=cfg_extra), num_classes=3)
    d2 = {_to_detectron2(k): v for k, v in src.state_dict().items()}
    assert any(k.endswith("res3.0.shortcut.norm.running_var") for k in d2)
    path = tmp_path / f"model_final{suffix}"
    if suffix == ".pth":
        torch.save({"model": d2, "iteration": 10}, path)
    else:
        path.write_bytes(
            pickle.dumps({"model": {k: v.numpy() for k, v in d2.items()}, "__author__": "d2"})
        )
    torch.manual_seed(1)
    dst = build_model(tiny_config(arch, extra=cfg_extra), num_classes=3)
    assert load_checkpoint(dst, path) == "detectron2"
    for k, v in src.state_dict().items():
        if arch == "c4" and k.startswith(("rpn.head.cls_logits", "rpn.head.bbox_pred")):
            # several sizes per location: reordered
            # (test_detectron2_anchor_order_is_permuted_for_c4)
            continue
        assert torch.equal(v, dst.state_dict()[k]), k
    if (
        suffix == ".pkl"
    ):  # detectron2 .pkl weights are caffe-format: a torchvision-pixel model is refused
        with pytest.raises(ValueError, match="pixels"):
            load_checkpoint(build_model(tiny_config("fpn"), num_classes=3), path)


def test_detectron2_anchor_order_is_permuted_for_c4():
    # detectron2 orders a location's anchors size-major; ours is ratio-major (torchvision)
    torch.manual_seed(0)
    model = build_model(tiny_config("c4"), num_classes=3)
    a = model.rpn.head.cls_logits.out_channels
    assert a == 9
    from resdet.io.checkpoints import _ratio_major_anchors

    d2_bias = torch.arange(a, dtype=torch.float32)  # d2 index s * 3 + r
    state = {
        "rpn.head.cls_logits.weight": torch.zeros(a, 4, 1, 1),
        "rpn.head.cls_logits.bias": d2_bias.clone(),
        "rpn.head.bbox_pred.weight": torch.zeros(4 * a, 4, 1, 1),
        "rpn.head.bbox_pred.bias": torch.arange(4 * a, dtype=torch.float32),
    }
    _ratio_major_anchors(state, model)
    # ours: index r * 3 + s must hold d2's s * 3 + r
    assert state["rpn.head.cls_logits.bias"].tolist() == [
        s * 3 + r for r in range(3) for s in range(3)
    ]
    assert state["rpn.head.bbox_pred.bias"].view(a, 4)[1].tolist() == [12.0, 13.0, 14.0, 15.0]


@pytest.mark.parametrize("arch", ["c4", "fpn"])
def test_detector_checkpoint_feeds_a_backbone(tmp_path, arch):
    """A trained detector's ResNet (C4: res5 lives in the RoI head) loads into a plain ResNet."""
    torch.manual_seed(0)
    det = build_model(tiny_config(arch), num_classes=3).eval()
    path = tmp_path / "det.pth"
    torch.save(
        {
            "format": "resdet",
            "kind": "detector",
            "model": det.state_dict(),
            "pixel_format": det.pixel_format.to_dict(),
        },
        path,
    )
    body = ResNet(18, out_features=("res4", "res5"), norm="FrozenBN").eval()
    from resdet.io.checkpoints import load_backbone_weights

    load_backbone_weights(body, path)
    res5 = det.roi_heads.box_head.res5 if arch == "c4" else det.backbone.bottom_up.layer4
    for k, v in res5.state_dict().items():
        assert torch.equal(body.layer4.state_dict()[k], v), k
    layer3 = det.backbone.layer3 if arch == "c4" else det.backbone.bottom_up.layer3
    for k, v in layer3.state_dict().items():
        assert torch.equal(body.layer3.state_dict()[k], v), k


def test_c4_extra_norm_normalises_res5_output_before_pooling():
    # MoCo's protocol: BN (training statistics) on res5's output, so each channel of the pooled
    # map is zero-mean, unit-variance over the RoIs and positions of a batch before the pooling
    model = build_model(
        tiny_config("c4", extra=["model.backbone.norm=BN", "model.roi_heads.res5_extra_norm=true"]),
        num_classes=3,
    )
    head = model.roi_heads.box_head
    assert isinstance(head.norm, torch.nn.BatchNorm2d)
    assert head.norm.num_features == head.out_channels == 512
    seen = {}
    head.norm.register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    head.train()
    pooled = head(torch.randn(6, 256, 4, 4))
    out = seen["out"]
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(512), atol=1e-4)
    assert torch.allclose(out.var(dim=(0, 2, 3), unbiased=False), torch.ones(512), atol=1e-2)
    assert torch.allclose(pooled, out.mean(dim=(2, 3)))
    plain = build_model(tiny_config("c4"), num_classes=3).roi_heads.box_head
    assert plain.norm is None
