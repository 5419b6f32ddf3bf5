"""Small detectors and a synthetic two-image data set shared by the heads tests."""

from pathlib import Path

import torch

from heads.ops.box_ops import pairwise_iou
from resdet.config import Config, load_config

CONFIGS = Path(__file__).parents[2] / "configs"

#: small inputs, few proposals and samples, no weight files
TINY = [
    "model.backbone.weights=null",
    "model.input.min_size_train=[64]",
    "model.input.max_size_train=128",
    "model.input.min_size_test=64",
    "model.input.max_size_test=128",
    "model.rpn.pre_nms_top_n_train=100",
    "model.rpn.post_nms_top_n_train=32",
    "model.rpn.pre_nms_top_n_test=100",
    "model.rpn.post_nms_top_n_test=16",
    "model.rpn.batch_size_per_image=64",
    "model.roi_heads.batch_size_per_image=8",
    "model.roi_heads.positive_fraction=0.5",
]

FPN_CONFIG = CONFIGS / "frcnn_r50_fpn_coco.yaml"
#: with TINY and model.backbone.depth: the FPN detector of `tiny_config("fpn")`
TINY_FPN = [
    "model.fpn.out_channels=32",
    "model.roi_heads.fc_dim=64",
    "model.anchors.sizes=[[8],[16],[32],[64],[128]]",
]


def tiny_config(arch: str, depth: int = 18, extra: list[str] | None = None) -> Config:
    """A C4 (paper recipe) or FPN (modern recipe) config shrunk for CPU tests on ~64 px images."""
    if arch == "c4":
        return load_config(
            CONFIGS / "frcnn_r101_coco.yaml",
            TINY
            + [
                f"model.backbone.depth={depth}",
                "model.pixel_format=torchvision",
                "model.backbone.stride_in_1x1=false",
                "model.anchors.sizes=[[16,32,64]]",
                "model.roi_heads.pooler=align",
                "model.roi_heads.pooler_resolution=4",
                "model.roi_heads.aligned=true",
            ]
            + (extra or []),
        )
    return load_config(
        FPN_CONFIG, TINY + [f"model.backbone.depth={depth}", *TINY_FPN] + (extra or [])
    )


def synthetic_set() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two noisy images with three solid rectangles, one colour per class (labels 0, 1, 2)."""
    colours = torch.tensor([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.2, 1.0]])
    layout = [
        ((64, 80), [((5, 10, 30, 35), 0), ((45, 25, 75, 55), 1)]),
        ((72, 64), [((15, 20, 50, 60), 2)]),
    ]
    g = torch.Generator().manual_seed(0)
    images, targets = [], []
    for (h, w), objects in layout:
        img = torch.rand(3, h, w, generator=g) * 0.3
        for (x1, y1, x2, y2), c in objects:
            img[:, y1:y2, x1:x2] = colours[c][:, None, None]
        images.append(img)
        targets.append(
            {
                "boxes": torch.tensor([o[0] for o in objects], dtype=torch.float32),
                "labels": torch.tensor([o[1] for o in objects]),
            }
        )
    return images, targets


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(M, P) and (N, P) flattened 0/1 masks -> (M, N) IoU."""
    inter = a @ b.T
    return inter / (a.sum(1)[:, None] + b.sum(1)[None] - inter).clamp(min=1)


def average_precision(
    dets: list[dict], targets: list[dict], num_classes: int, iou: float = 0.5, masks: bool = False
) -> float:
    """VOC all-point AP at ``iou``, averaged over classes; each object matches one detection at
    most. ``masks``: overlaps are mask IoUs (detections' ``masks`` (D, 1, H, W) probabilities at
    0.5 against targets' ``masks`` (N, H, W)) instead of box IoUs."""
    aps = []
    for c in range(num_classes):
        found = []  # (score, true positive?)
        num_gt = 0
        for d, t in zip(dets, targets):
            gt = t["boxes"][t["labels"] == c]
            num_gt += len(gt)
            keep = d["labels"] == c
            boxes, scores = d["boxes"][keep], d["scores"][keep]
            if masks:
                gt = t["masks"][t["labels"] == c].flatten(1).float()
                boxes = (d["masks"][keep, 0] > 0.5).flatten(1).float()
            taken = torch.zeros(len(gt), dtype=torch.bool)
            for i in scores.argsort(descending=True).tolist():
                overlaps = (
                    (mask_iou if masks else pairwise_iou)(boxes[i : i + 1], gt)[0]
                    if len(gt)
                    else torch.zeros(0)
                )
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


def overfit(
    model: torch.nn.Module,
    images: list[torch.Tensor],
    targets: list[dict[str, torch.Tensor]],
    num_classes: int,
    *,
    max_iter: int,
    first_eval: int,
    masks: bool = False,
) -> tuple[float, int, dict[str, torch.Tensor]]:
    """SGD with warmup and gradient clipping, as detection training does, until the training
    images reach AP@0.5 = 1.0 (box, or mask with `masks`), checked every 10 iterations from
    `first_eval`. Returns (the last AP, iterations run, the last losses)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: min(1.0, (i + 1) / 20))
    ap = 0.0
    for it in range(1, max_iter + 1):
        model.train()
        losses = model(images, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        warmup.step()
        if it >= first_eval and it % 10 == 0:
            model.eval()
            with torch.no_grad():
                ap = average_precision(model(images), targets, num_classes, masks=masks)
            if ap == 1.0:
                break
    return ap, it, losses
