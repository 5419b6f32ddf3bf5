"""Each detector design learns a two-image, three-object set to mAP@0.5 = 1.0 on CPU."""

import time

import pytest
import torch
from tiny_detectors import synthetic_set, tiny_config

from heads.box_ops import pairwise_iou
from resdet import build_model


def average_precision(
    dets: list[dict], targets: list[dict], num_classes: int, iou: float = 0.5
) -> float:
    """VOC all-point AP at ``iou``, averaged over classes;
    each object matches one detection at most."""
    aps = []
    for c in range(num_classes):
        found = []  # (score, true positive?)
        num_gt = 0
        for d, t in zip(dets, targets):
            gt = t["boxes"][t["labels"] == c]
            num_gt += len(gt)
            keep = d["labels"] == c
            boxes, scores = d["boxes"][keep], d["scores"][keep]
            taken = torch.zeros(len(gt), dtype=torch.bool)
            for i in scores.argsort(descending=True).tolist():
                overlaps = pairwise_iou(boxes[i : i + 1], gt)[0] if len(gt) else torch.zeros(0)
                j = int(overlaps.argmax()) if len(gt) else -1
                hit = j >= 0 and overlaps[j] >= iou and not taken[j]
                if hit:
                    taken[j] = True
                found.append((scores[i].item(), hit))
        if num_gt == 0:
            continue
        found.sort(key=lambda f: -f[0])
        tp = torch.tensor([f[1] for f in found], dtype=torch.float64).cumsum(0)
        precision = tp / torch.arange(1, len(found) + 1)
        recall = tp / num_gt
        ap, prev_recall = 0.0, 0.0
        for k in range(len(found)):
            if found[k][1]:
                ap += (recall[k].item() - prev_recall) * precision[k:].max().item()
                prev_recall = recall[k].item()
        aps.append(ap)
    return sum(aps) / len(aps)


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
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: min(1.0, (i + 1) / 20))
    ap, start, max_iter = 0.0, time.time(), 200
    for it in range(1, max_iter + 1):
        model.train()
        losses = model(images, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        warmup.step()
        if it >= 30 and it % 10 == 0:
            model.eval()
            with torch.no_grad():
                ap = average_precision(model(images), targets, 3)
            if ap == 1.0:
                break
    print(f"{arch} R{depth}: mAP@0.5 {ap:.3f} after {it} iterations, {time.time() - start:.1f} s")
    assert ap == 1.0, f"mAP@0.5 {ap} after {max_iter} iterations; last losses {losses}"
