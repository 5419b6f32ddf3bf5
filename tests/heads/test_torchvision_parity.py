"""A seeded torchvision fasterrcnn_resnet50_fpn, saved and loaded into the model built from
configs/torchvision_frcnn_r50_fpn_coco.yaml, gives the same proposals and the same detections."""

from pathlib import Path

import pytest
import torch
from torchvision.models.detection import FasterRCNN
from torchvision.ops import FrozenBatchNorm2d
from torchvision_models import seeded_torchvision

from resdet import build_model, load_checkpoint, load_config

CONFIG = Path(__file__).parents[2] / "configs" / "torchvision_frcnn_r50_fpn_coco.yaml"
MIN_SIZE, MAX_SIZE = 256, 400  # smaller than 800/1333 for CPU time, the same in both models


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tv = seeded_torchvision(FasterRCNN, MIN_SIZE, MAX_SIZE)
    path = tmp_path_factory.mktemp("tv") / "fasterrcnn_resnet50_fpn.pth"
    torch.save(tv.state_dict(), path)
    sizes = [
        f"model.input.min_size_test={MIN_SIZE}",
        f"model.input.max_size_test={MAX_SIZE}",
        f"model.input.min_size_train=[{MIN_SIZE}]",
        f"model.input.max_size_train={MAX_SIZE}",
    ]
    # torchvision's arithmetic exactly: folded norms and NHWC convolutions round differently
    # (1e-6 relative), enough to reorder near-tied proposal scores; test_fast_defaults covers them
    exact = ["model.backbone.fold_frozen_bn=false", "model.input.channels_last=false"]
    ours = build_model(load_config(CONFIG, sizes + exact)).eval()
    fast = build_model(load_config(CONFIG, sizes)).eval()
    for model in (ours, fast):
        assert load_checkpoint(model, path) == "torchvision"
        eps = {m.eps for m in model.modules() if isinstance(m, FrozenBatchNorm2d)}
        assert eps == {m.eps for m in tv.modules() if isinstance(m, FrozenBatchNorm2d)} == {0.0}
    return tv, ours, fast


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(3)
    return [torch.rand(3, 200, 275, generator=g), torch.rand(3, 250, 166, generator=g)]


@torch.no_grad()
def test_same_proposals(models, images):
    tv, ours, _ = models
    image_list, _ = tv.transform(images)
    tv_props, _ = tv.rpn(image_list, tv.backbone(image_list.tensors))
    batch, sizes, _ = ours.preprocessor(images, None, ours.pixel_format)
    assert tuple(batch.shape) == tuple(image_list.tensors.shape)
    feats = ours.backbone(batch)
    props, _ = ours.rpn([feats[f] for f in ours.rpn_features], sizes, tuple(batch.shape[-2:]))
    for i, expected in enumerate(tv_props):
        got = props.boxes[props.image_index == i]
        assert got.shape == expected.shape and len(got) > 100
        torch.testing.assert_close(got, expected, atol=1e-3, rtol=0)


@torch.no_grad()
def test_same_detections(models, images):
    tv, ours, _ = models
    expected, got = tv(images), ours(images)
    for e, g in zip(expected, got):
        assert len(g["boxes"]) == len(e["boxes"]) > 10
        torch.testing.assert_close(g["boxes"], e["boxes"], atol=1e-3, rtol=0)
        torch.testing.assert_close(g["scores"], e["scores"], atol=1e-4, rtol=0)
        assert torch.equal(g["labels"], e["labels"] - 1)  # torchvision's label 0 is background


def test_same_training_losses(models, images):
    """With samplers that take every labelled anchor/proposal, training is deterministic: the four
    losses must equal torchvision's."""
    tv, ours, _ = models
    for sampler in (tv.rpn.fg_bg_sampler, tv.roi_heads.fg_bg_sampler):
        sampler.batch_size_per_image, sampler.positive_fraction = 10**6, 1.0
    for head in (ours.rpn, ours.roi_heads):
        head.batch_size_per_image, head.positive_fraction = 10**6, 1.0
    targets = [
        {
            "boxes": torch.tensor([[10.0, 20.0, 120.0, 150.0], [150.0, 30.0, 260.0, 90.0]]),
            "labels": torch.tensor([3, 17]),
        },
        {"boxes": torch.tensor([[40.0, 60.0, 100.0, 200.0]]), "labels": torch.tensor([0])},
    ]
    tv_targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]
    try:
        tv.train(), ours.train()
        expected, got = tv(images, tv_targets), ours(images, targets)
    finally:
        tv.eval(), ours.eval()
    names = {
        "loss_objectness": "loss_rpn_cls",
        "loss_rpn_box_reg": "loss_rpn_box",
        "loss_classifier": "loss_cls",
        "loss_box_reg": "loss_box",
    }
    assert got["loss_box"] > 0 and got["loss_rpn_box"] > 0
    for tv_name, name in names.items():
        torch.testing.assert_close(got[name], expected[tv_name], rtol=1e-4, atol=1e-6, msg=name)


@torch.no_grad()
def test_fast_defaults_compute_the_same_features(models, images):
    """The default build (frozen norms folded into convolutions, NHWC batch) computes torchvision's
    FPN features up to float rounding."""
    tv, _, fast = models
    batch, _, _ = fast.preprocessor(images, None, fast.pixel_format)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    got = fast.backbone(batch)
    expected = tv.backbone(tv.transform(images)[0].tensors)
    for (name, g), e in zip(got.items(), expected.values()):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5 * float(e.abs().max()), msg=name)
