"""Pictures of a run: ground truth and detections drawn on dataset images, and curves from `metrics.jsonl`.

Boxes: `draw_detections` overlays ground truth (`GT_COLOUR`, class name) and predictions (`PRED_COLOUR`,
class name and score) on one image with `torchvision.utils.draw_bounding_boxes`; `group_detections`
checks a results-format list against a dataset with the evaluators' own record checks (so the files
`tools/eval_det.py --detections` accepts are accepted) and groups it per image; `draw_dataset` writes one PNG per
image at the image's own size, in the frame the results format uses (the decoded file, no resize).

Curves: `read_run` collects every numeric key of a run's `metrics.jsonl` (plus the last
`eval/metrics.json`) as a series over iterations; `plot_curves` draws one subplot per key, one line
per run.
"""
from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_convert
from torchvision.utils import draw_bounding_boxes

from resdet.data.dataset import DetectionDataset
from resdet.data.image_io import read_image
from resdet.data.records import DatasetError, ImageRecord
from resdet.evaluation.base import DetectionEvaluator
from resdet.utils.figures import pyplot, save_figure

GT_COLOUR = (0, 255, 0)
PRED_COLOUR = (255, 0, 64)
GT_WIDTH = 3
#: thinner than GT, so a prediction on top of its ground truth leaves the GT's inner ring visible
PRED_WIDTH = 2

LOSS_KEYS = ("total_loss", "loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box")
#: evaluation results as the trainer logs them (COCO: AP50/AP; VOC: mAP50_voc07/mAP50/mAP)
METRIC_KEYS = ("eval/AP50", "eval/AP", "eval/mAP50_voc07", "eval/mAP50", "eval/mAP")


@dataclass
class ImageDetections:
    """Predictions on one image: `boxes` (K, 4) float32 xyxy absolute pixels of the decoded file,
    `scores` (K,) float32, `labels` (K,) int64 contiguous `0..C-1`."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def group_detections(results: list[dict[str, Any]], dataset: DetectionDataset,
                     source: str = "<results>") -> dict[int | str, ImageDetections]:
    """Check `results` (DESIGN's results format: COCO ids, or VOC id strings and 1-based class indices)
    against `dataset` and group them by `image_id`; errors name `source`, the record and the field."""
    names = " + ".join(s.name for s in dataset.sources)
    category_ids = {tuple(s.category_ids) for s in dataset.sources}
    if len(category_ids) != 1:
        raise DatasetError(f"{names}: the entries number their categories differently; draw them one at a time")
    # the evaluators' own record checks and id mapping, without their one-COCO-file limit
    checker = DetectionEvaluator(dataset.class_names, dataset.sources[0].category_ids,
                                 [r.image_id for r in dataset.records], names)
    checker.load_results(results, source)
    rows: dict[int | str, list[tuple[list[float], float, int]]] = {}
    for i, d in enumerate(checker.detections):
        if d["bbox"][2] < 0 or d["bbox"][3] < 0:
            raise DatasetError(f"{source}: record {i}: field 'bbox' {d['bbox']!r} has a negative width or height "
                               "(expected [x, y, w, h])")
        rows.setdefault(d["image_id"], []).append((d["bbox"], d["score"], checker.label_of[d["category_id"]]))
    grouped = {}
    for image_id, dets in rows.items():
        xywh = torch.tensor([b for b, _, _ in dets], dtype=torch.float32).reshape(-1, 4)
        grouped[image_id] = ImageDetections(box_convert(xywh, "xywh", "xyxy"),
                                            torch.tensor([s for _, s, _ in dets], dtype=torch.float32),
                                            torch.tensor([k for _, _, k in dets], dtype=torch.int64))
    return grouped


def draw_detections(image: torch.Tensor, record: ImageRecord, class_names: Sequence[str],
                    detections: ImageDetections | None = None, score_thresh: float = 0.5) -> torch.Tensor:
    """Draw `record`'s ground truth, then the detections scoring at least `score_thresh`.

    `image` is uint8 (3, H, W), the decoded file the record describes. Returns a new uint8 (3, H, W).
    VOC `difficult` objects are labelled "(difficult)", COCO crowd regions "crowd".
    """
    gt_boxes = torch.as_tensor(np.concatenate([record.boxes, record.crowd_boxes]), dtype=torch.float32)
    gt_text = [class_names[int(k)] + (" (difficult)" if diff else "")
               for k, diff in zip(record.labels, record.difficult)] + ["crowd"] * len(record.crowd_boxes)
    out = image
    if len(gt_boxes):
        out = draw_bounding_boxes(out, gt_boxes, gt_text, colors=GT_COLOUR, width=GT_WIDTH, fill_labels=True)
    if detections is not None:
        keep = detections.scores >= score_thresh
        if keep.any():
            text = [f"{class_names[int(k)]} {s:.2f}"
                    for k, s in zip(detections.labels[keep], detections.scores[keep].tolist())]
            out = draw_bounding_boxes(out, detections.boxes[keep], text, colors=PRED_COLOUR, width=PRED_WIDTH,
                                      fill_labels=True)
    return out


def _file_stem(image_id: int | str) -> str:
    return re.sub(r"[^\w.-]", "_", str(image_id))


def draw_dataset(dataset: DetectionDataset, detections: dict[int | str, ImageDetections], output_dir: str | Path, *,
                 num: int | None = None, image_ids: Sequence[str] | None = None,
                 score_thresh: float = 0.5) -> list[Path]:
    """Write `<output_dir>/<image_id>.png` for the first `num` images of `dataset` (all when None), or for
    the images whose id (as text) is in `image_ids`; returns the paths written."""
    records = dataset.records
    if image_ids is not None:
        by_id = {str(r.image_id): r for r in records}
        unknown = [i for i in image_ids if i not in by_id]
        if unknown:
            names = " + ".join(s.name for s in dataset.sources)
            raise DatasetError(f"image id(s) {', '.join(unknown)} are not images of {names}")
        records = [by_id[i] for i in image_ids]
    if num is not None:
        records = records[:num]
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for r in records:
        # (H, W, 3) -> (3, H, W) for draw_bounding_boxes, and back for PIL
        image = torch.from_numpy(read_image(r.file_name)).permute(2, 0, 1)
        drawn = draw_detections(image, r, dataset.class_names, detections.get(r.image_id), score_thresh)
        path = out_dir / f"{_file_stem(r.image_id)}.png"
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(path)
        written.append(path)
    return written


@dataclass
class RunCurves:
    """Every numeric key logged by one run: `series[key] = (iterations (T,) int64, values (T,) float64)`,
    sorted by iteration; NaN where a value was logged as null (non-finite)."""

    label: str
    path: Path
    series: dict[str, tuple[np.ndarray, np.ndarray]]


def _number(value: Any) -> float | None:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _iteration(value: Any) -> int | None:
    v = _number(value)
    return None if v is None or not math.isfinite(v) else int(v)


def read_run(run_dir: str | Path, label: str | None = None) -> RunCurves:
    """Read `run_dir/metrics.jsonl` (and `run_dir/eval/metrics.json` when it holds an iteration).

    A malformed last line (a run killed mid-write) is skipped with a warning; a malformed line elsewhere
    is an error naming the file and line.
    """
    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics log (is {run_dir} a training output directory?)")
    points: dict[str, dict[int, float]] = {}
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if n == len(lines):
                warnings.warn(f"{path}:{n}: skipping an incomplete last line ({e})")
                continue
            raise ValueError(f"{path}:{n}: not JSON: {e}") from None
        iteration = _iteration(record.get("iteration")) if isinstance(record, dict) else None
        if iteration is None:
            raise ValueError(f"{path}:{n}: expected an object with a numeric field 'iteration'")
        for key, value in record.items():
            v = _number(value)
            if key != "iteration" and v is not None:
                points.setdefault(key, {})[iteration] = v
    _add_eval_json(run_dir / "eval" / "metrics.json", points)
    series = {k: (np.array(sorted(p), dtype=np.int64), np.array([p[i] for i in sorted(p)], dtype=np.float64))
              for k, p in points.items()}
    return RunCurves(label or run_dir.name, path, series)


def _add_eval_json(path: Path, points: dict[str, dict[int, float]]) -> None:
    """The trainer's `{"iteration", "metrics"}` file adds its values as `eval/<key>` points; a file without
    an iteration (written by `eval_det.py`) has no place on the curve and is left out."""
    if not path.is_file():
        return
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON: {e}") from None
    iteration = _iteration(data.get("iteration")) if isinstance(data, dict) else None
    if iteration is None or not isinstance(data.get("metrics"), dict):
        return
    for key, value in data["metrics"].items():
        v = _number(value)
        if v is not None:
            points.setdefault(f"eval/{key}", {}).setdefault(iteration, v)


def resolve_keys(runs: Sequence[RunCurves], keys: Sequence[str] | None = None) -> list[str]:
    """The series to plot. Default: the `LOSS_KEYS` and `METRIC_KEYS` any run has. A requested key may
    omit the `eval/` prefix; one that no run logged is an error listing the keys that exist."""
    available = {k for r in runs for k in r.series}
    if keys is None:
        chosen = [k for k in (*LOSS_KEYS, *METRIC_KEYS) if k in available]
        if not chosen:
            raise ValueError(f"none of {', '.join(str(r.path) for r in runs)} logs a loss or mAP key "
                             f"({', '.join(LOSS_KEYS + METRIC_KEYS)}); pass --keys from: "
                             f"{', '.join(sorted(available)) or '(none)'}")
        return chosen
    chosen = []
    for key in keys:
        found = key if key in available else f"eval/{key}" if f"eval/{key}" in available else None
        if found is None:
            raise ValueError(f"key {key!r} is in none of {', '.join(str(r.path) for r in runs)}; "
                             f"logged keys: {', '.join(sorted(available)) or '(none)'}")
        chosen.append(found)
    return chosen


def plot_curves(runs: Sequence[RunCurves], keys: Sequence[str], output: str | Path, *, ncols: int = 3) -> Path:
    """Write a PNG with one subplot per key (x: iteration) and one line per run that logged the key."""
    plt = pyplot()

    if not runs or not keys:
        raise ValueError("nothing to plot: need at least one run and one key")
    ncols = min(ncols, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.4 * nrows), squeeze=False)
    colours = [plt.cm.tab10(i % 10) for i in range(len(runs))]
    for ax, key in zip(axes.flat, keys):
        for run, colour in zip(runs, colours):
            if key in run.series:
                iters, values = run.series[key]
                # evaluation points are sparse: mark them so a single evaluation still shows
                ax.plot(iters, values, color=colour, label=run.label, marker="o" if key.startswith("eval/") else None,
                        markersize=3, linewidth=1.2)
        ax.set_title(key)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    return save_figure(fig, output, dpi=100)


def run_labels(run_dirs: Sequence[str | Path]) -> list[str]:
    """Each run's directory name, or its path as given where two runs share a name."""
    names = [Path(d).name for d in run_dirs]
    return [name if names.count(name) == 1 else str(d) for name, d in zip(names, run_dirs)]
