"""torch.compile of the backbone (what `tools/benchmark.py --compile` and training use):
dynamo captures it with the default fast paths (folded frozen norms, NHWC batch) and
computes the eager function.

The `aot_eager` backend runs dynamo and AOTAutograd (forward and backward graphs) without inductor's
code generation, which would take minutes on a 2-core CI machine."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from resdet import build_model, load_config
from resdet.deploy.compile import CompileStats, compile_detector
from tests.heads.tiny_detectors import synthetic_set, tiny_config

CONFIGS = Path(__file__).parents[2] / "configs"


def test_compiled_backbone_matches_eager():
    cfg = load_config(
        CONFIGS / "frcnn_r50_fpn_coco.yaml",
        [
            "model.backbone.depth=18",
            "model.fpn.out_channels=32",
            "model.input.min_size_test=64",
            "model.input.max_size_test=64",
            "model.input.min_size_train=[64]",
            "model.input.max_size_train=64",
            "model.roi_heads.fc_dim=32",
        ],
    )
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=3, load_weights=False)
    assert cfg.model.backbone.fold_frozen_bn and cfg.model.input.channels_last
    batch = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    compiled = torch.compile(model.backbone, backend="aot_eager", fullgraph=True)
    for training in (True, False):
        model.train(training)
        expected = model.backbone(batch)
        got = compiled(batch)
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-5, msg=name)
    model.train()
    sum(v.square().mean() for v in compiled(batch).values()).backward()
    trainable = [p for p in model.backbone.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)


# The whole detector (resdet.deploy.compile.compile_detector): preprocessor, backbone, RPN and RoI
# heads in one torch.compile. Graph breaks at data-dependent ops (nonzero, NMS, bincount) are
# expected; the figures come from Dynamo's counters through resdet.deploy.compile.CompileStats.


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _tiny_detector(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(tiny_config(arch), num_classes=3, load_weights=False)


def _resized(images: list[torch.Tensor], size: tuple[int, int]) -> list[torch.Tensor]:
    return [F.interpolate(img[None], size=size, mode="bilinear")[0] for img in images]


def _assert_same_detections(got: list[dict], expected: list[dict]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert len(e["boxes"]) > 0
        torch.testing.assert_close(g["boxes"], e["boxes"], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(g["scores"], e["scores"], rtol=1e-4, atol=1e-4)
        assert torch.equal(g["labels"], e["labels"])


@torch.no_grad()
def test_compiled_fpn_detector_inference_matches_eager():
    """Detections equal eager on two batch sizes (static graphs: one compile each); the same
    input again compiles nothing."""
    model = _tiny_detector("fpn").eval()
    compiled = compile_detector(model, backend="aot_eager", dynamic=False)
    images, _ = synthetic_set()
    steps = {}
    # network inputs 64x80 + 72x64 (a 72x80 batch), then a 64x112 batch
    for name, batch in (
        ("first", images),
        ("again", images),
        ("second size", _resized(images, (64, 112))),
    ):
        before = CompileStats.snapshot()
        _assert_same_detections(compiled(batch), model(batch))
        steps[name] = CompileStats.snapshot() - before
    assert steps["first"].graphs > 1 and steps["first"].graph_breaks > 0
    assert steps["again"] == CompileStats()
    assert steps["second size"].recompiles > 0  # static shapes: size guards fail


@torch.no_grad()
def test_dynamic_shapes_bound_recompiles_of_new_image_sizes():
    """Automatic dynamic shapes (``dynamic=None``): the first size change recompiles the
    size-dependent frames with symbolic sizes, after which a third size recompiles at most a
    couple of frames (those that specialise on a size relation) and still matches eager."""
    model = _tiny_detector("c4").eval()  # C4: half the FPN detector's compile time
    compiled = compile_detector(model, backend="aot_eager")
    image = synthetic_set()[0][:1]
    steps = {}
    for name, size in (("first", (64, 80)), ("second size", (64, 112)), ("third size", (48, 72))):
        batch = _resized(image, size)
        before = CompileStats.snapshot()
        got = compiled(batch)
        steps[name] = CompileStats.snapshot() - before
    _assert_same_detections(got, model(batch))
    assert steps["second size"].recompiles > 0, steps
    assert steps["third size"].recompiles <= 2, steps


def test_compiled_fpn_detector_training_matches_eager_and_backpropagates():
    model = _tiny_detector("fpn").train()
    compiled = compile_detector(model, backend="aot_eager")
    images, targets = synthetic_set()
    torch.manual_seed(1)  # the resize draw and the samplers are random: same stream for both
    expected = model(images, targets)
    torch.manual_seed(1)
    got = compiled(images, targets)
    assert set(got) == set(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5, msg=name)
    model.zero_grad(set_to_none=True)
    sum(got.values()).backward()
    for part in (model.backbone, model.rpn, model.roi_heads):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
    before = CompileStats.snapshot()
    torch.manual_seed(2)
    compiled(images, targets)
    assert CompileStats.snapshot() - before == CompileStats()


@torch.no_grad()
def test_compiled_c4_detector_inference_matches_eager():
    model = _tiny_detector("c4").eval()
    compiled = compile_detector(model, backend="aot_eager")
    images, _ = synthetic_set()
    _assert_same_detections(compiled(images), model(images))
    before = CompileStats.snapshot()
    _assert_same_detections(compiled(images), model(images))
    assert CompileStats.snapshot() - before == CompileStats()
