"""torch.compile of the backbone (what `tools/benchmark.py --compile` and training use):
dynamo captures it with the default fast paths (folded frozen norms, NHWC batch) and
computes the eager function.

The `aot_eager` backend runs dynamo and AOTAutograd (forward and backward graphs) without inductor's
code generation, which would take minutes on a 2-core CI machine."""

from pathlib import Path

import torch

from resdet import build_model, load_config

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
