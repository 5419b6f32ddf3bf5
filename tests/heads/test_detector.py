"""The detector's call convention: training with empty images, input validation, output frame."""

import pytest
import torch
from tiny_detectors import synthetic_set, tiny_config

from heads.meta_arch.rcnn import FasterRCNN, MaskRCNN
from resdet import build_model
from resdet.config import ConfigError


@pytest.fixture(scope="module")
def fpn_model():
    torch.manual_seed(0)
    return build_model(tiny_config("fpn"), num_classes=3)


@pytest.mark.parametrize("arch", ["c4", "fpn"])
def test_images_without_boxes_train(arch, fpn_model):
    torch.manual_seed(0)
    model = fpn_model if arch == "fpn" else build_model(tiny_config("c4"), num_classes=3)
    model.train()
    images, targets = synthetic_set()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = model(images, [empty, dict(empty)])
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box"}
    assert losses["loss_rpn_box"].item() == 0.0 and losses["loss_box"].item() == 0.0
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_cls"] > 0
    sum(losses.values()).backward()
    # a batch mixing an empty and a non-empty image
    model.zero_grad()
    losses = model(images, [targets[0], empty])
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_rpn_box"] > 0
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is None or torch.isfinite(g).all() for g in grads)


def test_eval_output_format_and_frame(fpn_model):
    fpn_model.eval()
    images = [torch.rand(3, 50, 70), torch.rand(3, 130, 90)]
    with torch.no_grad():
        out = fpn_model(images)
    assert len(out) == 2
    for img, o in zip(images, out):
        assert set(o) == {"boxes", "scores", "labels"}
        assert o["boxes"].dtype == torch.float32 and o["boxes"].shape[1] == 4
        # boxes come back in the input image's pixels (clipped to it), not the resized frame
        if len(o["boxes"]):
            assert (
                o["boxes"][:, 2].max() <= img.shape[2] + 1e-3
                and o["boxes"][:, 3].max() <= img.shape[1] + 1e-3
            )
            assert o["labels"].min() >= 0 and o["labels"].max() < 3


def _target(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)}


@pytest.mark.parametrize(
    "images,targets,needle",
    [
        (
            [torch.rand(3, 40, 40), torch.rand(1, 40, 40)],
            None,
            r"image 1: expected shape \[3, H, W\], got \[1, 40, 40\]",
        ),
        (
            [torch.rand(3, 40, 40), torch.zeros(3, 40, 40, dtype=torch.uint8)],
            None,
            r"image 1: .*float.*uint8",
        ),
        (
            [torch.rand(3, 40, 40)],
            [{"boxes": torch.zeros(2, 5), "labels": torch.zeros(2, dtype=torch.int64)}],
            r"image 0: boxes must be \[N, 4\], got \[2, 5\]",
        ),
        (
            [torch.rand(3, 40, 40)] * 2,
            [_target([[1, 1, 5, 5]], [0]), _target([[1, 1, 5, 5], [8, 8, 8, 20]], [0, 1])],
            r"image 1: box 1 \[8.0, 8.0, 8.0, 20.0\] is degenerate",
        ),
        (
            [torch.rand(3, 40, 40)],
            [_target([[1, 1, float("nan"), 5]], [0])],
            r"image 0: box 0 .*nan.* is non-finite",
        ),
        (
            [torch.rand(3, 40, 40)] * 2,
            [_target([[1, 1, 5, 5]], [0]), _target([[1, 1, 5, 5]], [3])],
            r"image 1: label 3 .*out of range 0..2",
        ),
        ([torch.rand(3, 40, 40)], [_target([[1, 1, 5, 5]], [-1])], r"image 0: label -1"),
    ],
)
def test_bad_input_names_image_and_value(fpn_model, images, targets, needle):
    fpn_model.train(targets is not None)
    with pytest.raises(ValueError, match=needle):
        fpn_model(images, targets)


@pytest.mark.parametrize(
    "mode,train_nhwc,eval_nhwc",
    [("true", True, True), ("false", False, False), ("inference", False, True)],
)
def test_layout_modes(mode, train_nhwc, eval_nhwc):
    """`model.input.channels_last` picks the batch layout per mode; the values never change."""
    cfg = tiny_config("fpn", extra=[f"model.input.channels_last={mode}"])
    model = build_model(cfg, num_classes=3)
    pre, fmt = model.preprocessor, model.pixel_format
    images = [torch.rand(3, 50, 70), torch.rand(3, 40, 64)]
    for training, nhwc in ((True, train_nhwc), (False, eval_nhwc)):
        pre.train(training)
        torch.manual_seed(0)  # the same training size drawn in every mode
        batch, _, _ = pre(images, None, fmt)
        assert batch.is_contiguous(memory_format=torch.channels_last) == nhwc
        assert batch.is_contiguous() == (not nhwc)
        torch.manual_seed(0)
        pre.channels_last = False
        reference, _, _ = pre(images, None, fmt)
        pre.channels_last = cfg.model.input.channels_last
        assert torch.equal(batch, reference)


def test_layout_default_and_bad_value():
    assert tiny_config("fpn").model.input.channels_last == "inference"
    with pytest.raises(ConfigError, match=r"model\.input\.channels_last: 'nhwc' matches none of"):
        tiny_config("fpn", extra=["model.input.channels_last=nhwc"])


@pytest.mark.parametrize("arch", ["fpn", "c4"])
def test_mask_rcnn_is_built_for_a_mask_head_and_needs_one(arch):
    """`build_model` names a detector with a mask head `MaskRCNN` (still a `FasterRCNN`); the
    class refuses box-only RoI heads."""
    masked = build_model(tiny_config(arch, extra=["model.mask_head.enabled=true"]), num_classes=3)
    assert isinstance(masked, MaskRCNN) and isinstance(masked, FasterRCNN) and masked.has_masks
    boxes = build_model(tiny_config(arch), num_classes=3)
    assert type(boxes) is FasterRCNN and not boxes.has_masks
    parts = {
        "backbone": boxes.backbone,
        "rpn": boxes.rpn,
        "roi_heads": boxes.roi_heads,
        "preprocessor": boxes.preprocessor,
        "rpn_features": boxes.rpn_features,
        "roi_features": boxes.roi_features,
    }
    with pytest.raises(ValueError, match="MaskRCNN needs RoI heads with a mask head"):
        MaskRCNN(**parts)
