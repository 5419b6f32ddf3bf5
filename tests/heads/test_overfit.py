"""Each detector design learns a two-image, three-object set to mAP@0.5 = 1.0 on CPU."""

import time

import pytest
import torch
from tiny_detectors import average_precision, overfit, synthetic_set, tiny_config

from resdet import build_model


def test_average_precision_helper():
    t = [
        {
            "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]),
            "labels": torch.tensor([0, 1]),
        }
    ]
    perfect = [
        {"boxes": t[0]["boxes"], "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 1])}
    ]
    assert average_precision(perfect, t, 2) == 1.0
    # a higher-scored false positive in class 0 halves its precision at full recall
    fp_first = [
        {
            "boxes": torch.tensor(
                [[50.0, 50.0, 60.0, 60.0], [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]
            ),
            "scores": torch.tensor([0.95, 0.9, 0.8]),
            "labels": torch.tensor([0, 0, 1]),
        }
    ]
    assert average_precision(fp_first, t, 2) == pytest.approx((0.5 + 1.0) / 2)
    # a lower-scored duplicate does not hurt; a miss does
    assert (
        average_precision(
            [
                {
                    "boxes": t[0]["boxes"][:1],
                    "scores": torch.tensor([0.9]),
                    "labels": torch.tensor([0]),
                }
            ],
            t,
            2,
        )
        == 0.5
    )


@pytest.mark.parametrize(
    "arch,depth,freeze_at,size", [("c4", 18, 2, 64), ("c4", 50, 4, 96), ("fpn", 18, 2, 64)]
)
def test_overfit_two_images(arch, depth, freeze_at, size):
    """Random-init GN backbones (no pretrained weights offline), frozen early stages for CPU time;
    SGD with warmup and gradient clipping, as detection training does."""
    torch.manual_seed(0)
    cfg = tiny_config(
        arch,
        depth,
        [
            f"model.backbone.freeze_at={freeze_at}",
            "model.backbone.norm=GN",
            f"model.input.min_size_train=[{size}]",
            f"model.input.min_size_test={size}",
            f"model.input.max_size_train={2 * size}",
            f"model.input.max_size_test={2 * size}",
        ],
    )
    model = build_model(cfg, num_classes=3)
    images, targets = synthetic_set()
    start = time.time()
    ap, it, losses = overfit(model, images, targets, 3, max_iter=200, first_eval=30)
    print(f"{arch} R{depth}: mAP@0.5 {ap:.3f} after {it} iterations, {time.time() - start:.1f} s")
    assert ap == 1.0, f"mAP@0.5 {ap} after {it} iterations; last losses {losses}"
