"""The C4 and FPN mask heads learn two images of L-shaped objects to mask AP@0.5 = 1.0 on CPU.

An L covers 7/16 of its box, so a mask that only fills the box (what a head that learned nothing
beyond the boxes would give) has IoU 0.4375 < 0.5: the mask AP checks the shape was learned.
"""

import time

import pytest
import torch
from tiny_detectors import average_precision, mask_iou, overfit, tiny_config

from resdet import build_model


def l_shapes() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two noisy images with three L shapes (arm thickness 1/4 of the box), one colour per class."""
    colours = torch.tensor([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.2, 1.0]])
    layout = [
        ((64, 80), [((4, 8, 32, 36), 0), ((44, 24, 76, 56), 1)]),
        ((72, 64), [((12, 20, 52, 60), 2)]),
    ]
    g = torch.Generator().manual_seed(0)
    images, targets = [], []
    for (h, w), objects in layout:
        img = torch.rand(3, h, w, generator=g) * 0.3
        masks = torch.zeros(len(objects), h, w, dtype=torch.uint8)
        for k, ((x1, y1, x2, y2), _) in enumerate(objects):
            t = (x2 - x1) // 4
            masks[k, y1:y2, x1 : x1 + t] = 1  # vertical arm
            masks[k, y2 - t : y2, x1:x2] = 1  # horizontal arm
        for k, (_, c) in enumerate(objects):
            img[:, masks[k].bool()] = colours[c][:, None]
        images.append(img)
        targets.append(
            {
                "boxes": torch.tensor([o[0] for o in objects], dtype=torch.float32),
                "labels": torch.tensor([o[1] for o in objects]),
                "masks": masks,
            }
        )
    return images, targets


def test_a_box_filling_mask_is_not_enough():
    _, targets = l_shapes()
    t = targets[0]
    filled = torch.zeros_like(t["masks"])
    for k, (x1, y1, x2, y2) in enumerate(t["boxes"].int().tolist()):
        filled[k, y1:y2, x1:x2] = 1
    iou = mask_iou(filled.flatten(1).float(), t["masks"].flatten(1).float()).diag()
    torch.testing.assert_close(iou, torch.tensor([7 / 16, 7 / 16]))
    dets = [{**t, "scores": torch.ones(2), "masks": filled[:, None].float()}]
    assert average_precision(dets, [t], 2) == 1.0  # right boxes...
    assert average_precision(dets, [t], 2, masks=True) == 0.0  # ...wrong masks


@pytest.mark.parametrize("arch", ["c4", "fpn"])
def test_mask_heads_overfit_two_images(arch):
    torch.manual_seed(0)
    cfg = tiny_config(
        arch,
        18,
        [
            "model.backbone.freeze_at=2",
            "model.backbone.norm=GN",
            "model.mask_head.enabled=true",
            "model.mask_head.conv_dim=32",
            "model.mask_head.num_conv=2",
            "model.mask_head.pooler_resolution=8",
        ],
    )
    model = build_model(cfg, num_classes=3)
    images, targets = l_shapes()
    start = time.time()
    ap, it, losses = overfit(model, images, targets, 3, max_iter=300, first_eval=40, masks=True)
    print(f"{arch}: mask AP@0.5 {ap:.3f} after {it} iterations, {time.time() - start:.1f} s")
    assert ap == 1.0, f"mask AP@0.5 {ap} after {it} iterations; last losses {losses}"
