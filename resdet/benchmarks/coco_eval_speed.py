"""COCO box evaluation speed: our `COCOEvaluator` on each backend (`test.coco_backend`: pycocotools,
faster-coco-eval) against faster-coco-eval's own `COCOeval` called directly, on a generated set
the size of COCO 2017 val; tools/bench_coco_eval.py prints it.

The set (`synthetic_coco`, seeded): `images` images of 640 x 360..640 px (either orientation),
about 7.3 boxes an image (COCO 2017 val: 36,781 on 5,000 images; 1% of images empty), 80
categories with COCO's ids and a skewed frequency (the first one, "person"-like, about a quarter of
the boxes), sizes spread over the small / medium / large ranges (about 41 / 34 / 25%), an `area`
field below the box's (a mask's area, as COCO's), 1% crowd regions. Detections
(`synthetic_detections`): for each ground-truth box one to three jittered copies (the nearer, the
higher the score), then noise boxes of random category and size up to `dets_per_image` an image;
float32 boxes and scores, as a model gives them.

Each candidate is one call from the ground-truth file on disk to the 12 stats (JSON read and
indexed, detections turned into its input, matched, accumulated, summarised), timed by
`resdet.benchmarks.timing.timed` with its peak resident set; ours gets the detections as the
compact arrays ranks gather (`resdet.evaluation.detections.Detections`), faster-coco-eval the
results-format list of dicts (`COCO.loadRes`).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from resdet.benchmarks import timing
from resdet.evaluation.coco_evaluator import STAT_KEYS, COCOEvaluator
from resdet.evaluation.detections import Detections

#: COCO's 80 category ids (1..90 with ten gaps)
COCO_CATEGORY_IDS = [i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]
#: share of ground-truth boxes in the small, medium, large area ranges, and their side ranges (px)
SIZE_SHARES = (0.41, 0.34, 0.25)
SIDE_RANGES = ((4.0, 32.0), (32.0, 96.0), (96.0, 400.0))


def synthetic_coco(images: int, seed: int = 0, boxes_per_image: float = 7.36) -> dict[str, Any]:
    """A COCO instances file (dict) shaped like COCO 2017 val (module docstring); box
    `segmentation` is its rectangle as one polygon."""
    rng = np.random.default_rng(seed)
    freq = 1.0 / np.arange(1, 81) ** 0.9
    freq[0] *= 4  # one dominant class, as "person"
    freq /= freq.sum()
    out_images, annotations = [], []
    for i in range(images):
        side = int(rng.integers(360, 641))
        w, h = (640, side) if rng.random() < 0.7 else (side, 640)
        image_id = 1 + i * 7  # sparse ids, as COCO's
        out_images.append({"id": image_id, "width": w, "height": h, "file_name": f"{i:012d}.jpg"})
        n = 0 if rng.random() < 0.01 else 1 + rng.poisson(boxes_per_image / 0.99 - 1)
        for _ in range(n):
            band = rng.choice(3, p=SIZE_SHARES)
            lo, hi = SIDE_RANGES[band]
            hi = min(hi, 0.95 * min(w, h))
            sqrt_area = np.exp(rng.uniform(np.log(lo), np.log(max(hi, lo + 1))))
            aspect = np.exp(rng.uniform(np.log(1 / 3), np.log(3)))
            bw = min(sqrt_area * np.sqrt(aspect), w - 1.0)
            bh = min(sqrt_area / np.sqrt(aspect), h - 1.0)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            box = [round(float(v), 2) for v in (x, y, bw, bh)]
            x0, y0, x1, y1 = box[0], box[1], box[0] + box[2], box[1] + box[3]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": COCO_CATEGORY_IDS[int(rng.choice(80, p=freq))],
                    "bbox": box,
                    "area": round(box[2] * box[3] * float(rng.uniform(0.5, 0.9)), 2),
                    "iscrowd": int(rng.random() < 0.01),
                    "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
                }
            )
    return {
        "images": out_images,
        "annotations": annotations,
        "categories": [{"id": c, "name": f"category_{c}"} for c in COCO_CATEGORY_IDS],
    }


def synthetic_detections(
    gt: dict[str, Any], dets_per_image: int, seed: int = 0, score_decimals: int | None = None
) -> Detections:
    """`dets_per_image` detections on every image of `gt` (module docstring), as the compact
    arrays ranks gather. `score_decimals`: round the scores (many ties, which must sort alike)."""
    rng = np.random.default_rng(seed + 1)
    by_image: dict[int, list[dict[str, Any]]] = {im["id"]: [] for im in gt["images"]}
    for a in gt["annotations"]:
        by_image[a["image_id"]].append(a)
    image_ids, categories, boxes, scores = [], [], [], []
    for im in gt["images"]:
        w, h = im["width"], im["height"]
        rows: list[tuple[int, list[float], float]] = []
        for a in by_image[im["id"]]:
            for _ in range(int(rng.integers(1, 4))):
                x, y, bw, bh = a["bbox"]
                jitter = rng.normal(0, 0.12, 4) * np.array([bw, bh, bw, bh])
                nx, ny = np.clip([x + jitter[0], y + jitter[1]], 0, [w - 1, h - 1])
                nw = float(np.clip(bw + jitter[2], 1, w - nx))
                nh = float(np.clip(bh + jitter[3], 1, h - ny))
                score = float(
                    np.clip(1 - np.abs(jitter).sum() / (bw + bh) + rng.normal(0, 0.1), 0.01, 1)
                )
                category = (
                    a["category_id"] if rng.random() < 0.9 else int(rng.choice(COCO_CATEGORY_IDS))
                )
                rows.append((category, [float(nx), float(ny), nw, nh], score))
        while len(rows) < dets_per_image:
            side = np.exp(rng.uniform(np.log(4), np.log(300)))
            bw, bh = min(side * rng.uniform(0.5, 2), w - 1), min(side * rng.uniform(0.5, 2), h - 1)
            box = [
                float(rng.uniform(0, w - bw)),
                float(rng.uniform(0, h - bh)),
                float(bw),
                float(bh),
            ]
            rows.append((int(rng.choice(COCO_CATEGORY_IDS)), box, float(rng.uniform(0.01, 0.6))))
        rows = rows[:dets_per_image]
        image_ids += [im["id"]] * len(rows)
        categories += [r[0] for r in rows]
        boxes += [r[1] for r in rows]
        scores += [r[2] for r in rows]
    score_array = np.asarray(scores, dtype=np.float64)
    if score_decimals is not None:
        score_array = np.round(score_array, score_decimals)
    return Detections(
        image_ids=np.asarray(image_ids, dtype=np.int64),
        category_ids=np.asarray(categories, dtype=np.int64),
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        scores=score_array.astype(np.float32),
    )


def write_synthetic_set(
    folder: str | Path, images: int, dets_per_image: int, seed: int = 0
) -> tuple[Path, Detections]:
    """`synthetic_coco` written to `folder/instances.json`, and its detections."""
    gt = synthetic_coco(images, seed)
    path = Path(folder) / "instances.json"
    path.write_text(json.dumps(gt))
    return path, synthetic_detections(gt, dets_per_image, seed)


def coco_evaluator(ann_file: str | Path, backend: str) -> COCOEvaluator:
    """Our evaluator over every image of `ann_file`, on `backend`."""
    data = json.loads(Path(ann_file).read_text())
    categories = sorted(data["categories"], key=lambda c: c["id"])
    return COCOEvaluator(
        str(ann_file),
        [c["name"] for c in categories],
        [c["id"] for c in categories],
        [im["id"] for im in data["images"]],
        Path(ann_file).name,
        backend=backend,
    )


def faster_coco_eval_direct(ann_file: str | Path, results: list[dict[str, Any]]) -> list[float]:
    """faster-coco-eval's own box evaluation of `results` (results format): its `COCO`, `loadRes`,
    `COCOeval_faster` evaluate / accumulate / summarize; the 12 stats."""
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        ev = COCOeval_faster(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats[:12]]


@dataclass
class Run:
    """One timed candidate: wall and CPU seconds, peak resident set (MiB), its 12 stats."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    stats: list[float]


def timed_run(fn: Callable[[], list[float]]) -> Run:
    """`fn()` timed (`timing.timed`, peak memory reset first) -> a `Run`."""
    out: list[list[float]] = []
    t = timing.timed(lambda: out.append(fn()), reset_peak=True)
    return Run(t.wall_s, t.cpu_s, timing.peak_memory_mb("cpu"), out[0])


def compare_coco_eval(
    images: int,
    dets_per_image: int,
    seed: int = 0,
    *,
    backends: tuple[str, ...] = ("pycocotools", "faster"),
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Run]:
    """Generate the set in a temporary folder and time, in this order, our evaluator on each of
    `backends` (`"ours/<backend>"`) and faster-coco-eval's own (`"faster-coco-eval"`, when
    `"faster"` is among them), one call each."""
    runs: dict[str, Run] = {}
    with tempfile.TemporaryDirectory(prefix="coco_eval_speed") as folder:
        ann_file, dets = write_synthetic_set(folder, images, dets_per_image, seed)
        progress(f"{images} images, {len(dets)} detections")
        for backend in backends:
            evaluator = coco_evaluator(ann_file, backend)

            def ours() -> list[float]:
                evaluator.merge([dets])  # what ranks gather
                metrics = evaluator.evaluate()
                return [metrics[k] for k in STAT_KEYS]

            runs[f"ours/{backend}"] = timed_run(ours)
            progress(f"ours/{backend}: {runs[f'ours/{backend}'].wall_s:.1f} s")
        if "faster" in backends:
            results = dets.records()
            runs["faster-coco-eval"] = timed_run(lambda: faster_coco_eval_direct(ann_file, results))
            progress(f"faster-coco-eval: {runs['faster-coco-eval'].wall_s:.1f} s")
    return runs
