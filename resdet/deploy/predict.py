"""A trained detector on image files: drawings and one results-format JSON, no dataset needed.

`collect_images` expands files, folders and globs; `load_predictor` builds the config's model and
loads a checkpoint, taking the class names our checkpoints carry; `predict_images` runs it in
batches and writes `<output_dir>/<stem>.png` per image (detections drawn as
`resdet.reports.visualize.draw_predictions` draws them) and `<output_dir>/predictions.json`:

    [{"image_id": "<path as found>", "category_id": label + 1 (1-based index into class_names),
      "category_name": str, "bbox": [x, y, w, h] (pixels of the decoded file), "score": float,
      "segmentation": COCO RLE (Mask R-CNN only)}, ...]

Images that cannot be decoded are skipped, listed and counted, not fatal. Prediction never writes
over an input: an output folder that holds any input image (the folder an input lies in, also
through a symbolic link) is refused before anything is run (`check_output_dir`), since a drawing
`<stem>.png` there could replace the user's own `<stem>.png`.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision.ops import box_convert
from tqdm import tqdm

from heads.meta_arch.rcnn import FasterRCNN
from resdet.build import build_model
from resdet.config import Config
from resdet.data.image_io import BadImageError, read_image
from resdet.evaluation.rle import MASK_THRESHOLD, binary_to_rle
from resdet.io.checkpoints import load_checkpoint, load_detector_state, read_checkpoint_file
from resdet.reports.visualize import ImageDetections, draw_predictions
from resdet.utils.atomic import OutputDirError, atomic_write_text, ensure_writable_dir

#: suffixes a folder's files are taken by (lower case); a file named directly may have any suffix
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
RESULTS_FILE = "predictions.json"


def collect_images(inputs: Sequence[str]) -> list[Path]:
    """Image paths from files, folders (their image files by suffix, sorted, not recursive) and
    globs (``**`` recursive), in the order given, each once. An input that names nothing is a
    FileNotFoundError naming it."""
    found: dict[Path, None] = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            paths = [path]
        else:
            paths = [Path(p) for p in sorted(glob.glob(item, recursive=True)) if Path(p).is_file()]
        if not paths:
            what = "an empty folder" if path.is_dir() else "no file, folder or glob match"
            raise FileNotFoundError(f"{item}: {what} (images: {', '.join(IMAGE_SUFFIXES)})")
        found.update(dict.fromkeys(paths))
    return list(found)


def check_output_dir(
    paths: Sequence[Path], output_dir: str | Path, what: str = "--output-dir"
) -> Path:
    """`output_dir`, created and checked writable (`ensure_writable_dir`), after refusing it when
    any input image lies in it (as given, or its link target): the drawings and predictions.json
    must not be able to replace an input. An `OutputDirError` names the folder and the input."""
    out = Path(output_dir)
    resolved = out.resolve()
    for path in paths:
        if resolved in (path.absolute().parent.resolve(), path.resolve().parent):
            raise OutputDirError(
                f"{what} {out} holds input image {path}: drawings (<stem>.png) and "
                f"{RESULTS_FILE} written there could replace your own files; give a folder "
                "of its own"
            )
    return ensure_writable_dir(out, what)


@dataclass
class Predictor:
    """A detector in eval mode on `device` and the names of its labels ``0..C-1``."""

    model: FasterRCNN
    class_names: list[str]
    device: torch.device


def load_predictor(cfg: Config, weights: str | Path, device: str | torch.device) -> Predictor:
    """Build ``cfg``'s model and load ``weights`` (any format ``resdet.load_checkpoint`` reads).

    Class names come from the checkpoint (ours record them); for other weights ``model.num_classes``
    must be set and the classes are named ``"1"..str(C)``. Raises ValueError naming the file or the
    config key when neither tells the classes, and FileNotFoundError for a missing file.
    """
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    ckpt = read_checkpoint_file(path) if path.suffix != ".pkl" else None
    names = ckpt.get("class_names") if isinstance(ckpt, dict) else None
    if names is None:
        if cfg.model.num_classes is None:
            raise ValueError(
                f"{path} records no class names: set model.num_classes=N in {cfg.source} "
                "(or pass it as an override) to predict with it"
            )
        names = [str(k + 1) for k in range(cfg.model.num_classes)]
    model = build_model(cfg, len(names), load_weights=False)
    if ckpt is None:
        load_checkpoint(model, path)
    else:
        load_detector_state(model, ckpt, str(path))
    device = torch.device(device)
    return Predictor(model.to(device).eval(), list(names), device)


@dataclass
class PredictionReport:
    """What `predict_images` did: the images predicted, the drawings and JSON it wrote, and the
    images it skipped with the reason."""

    predicted: list[Path] = field(default_factory=list)
    drawings: list[Path] = field(default_factory=list)
    results: Path | None = None
    num_detections: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def predict_images(
    predictor: Predictor,
    paths: Sequence[Path],
    output_dir: str | Path,
    *,
    score_thresh: float = 0.5,
    batch_size: int = 4,
    progress: bool = True,
) -> PredictionReport:
    """Run ``predictor`` on ``paths`` in batches of ``batch_size``; keep detections scoring at
    least ``score_thresh``; write one PNG per image and `predictions.json` into ``output_dir``,
    which must not hold any of ``paths`` (`check_output_dir`)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out_dir = check_output_dir(paths, output_dir, "output folder")
    report = PredictionReport()
    results: list[dict[str, Any]] = []
    stems: set[str] = set()
    bar = tqdm(total=len(paths), desc="predict", unit="img", disable=not progress)
    for batch in _batches(paths, batch_size, report, bar):
        images = [torch.from_numpy(pixels).permute(2, 0, 1) for _, pixels in batch]
        with torch.no_grad():
            outputs = predictor.model(
                [im.to(predictor.device).float().div_(255.0) for im in images]
            )
        for (path, _), image, out in zip(batch, images, outputs):
            dets = _kept(out, score_thresh)
            results += _records(path, dets, predictor.class_names)
            drawn = draw_predictions(image, predictor.class_names, dets, score_thresh, str(path))
            drawing = out_dir / f"{_unique_stem(path, stems)}.png"
            Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(drawing)
            report.predicted.append(path)
            report.drawings.append(drawing)
        bar.update(len(batch))
    bar.close()
    report.num_detections = len(results)
    report.results = atomic_write_text(out_dir / RESULTS_FILE, json.dumps(results))
    return report


def _batches(
    paths: Sequence[Path], batch_size: int, report: PredictionReport, bar: tqdm
) -> Iterator[list[tuple[Path, Any]]]:
    """Decoded images in batches; an undecodable file goes to ``report.skipped`` instead and
    moves ``bar`` at once."""
    batch: list[tuple[Path, Any]] = []
    for path in paths:
        try:
            batch.append((path, read_image(path)))
        except (BadImageError, OSError) as e:
            report.skipped.append((path, str(e)))
            bar.update(1)
            bar.set_postfix(skipped=len(report.skipped))
            continue
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _kept(out: dict[str, torch.Tensor], score_thresh: float) -> ImageDetections:
    """One image's output on the CPU, detections below ``score_thresh`` removed; masks (D, H, W)
    bool at the evaluators' threshold."""
    keep = out["scores"] >= score_thresh
    masks = out.get("masks")
    return ImageDetections(
        out["boxes"][keep].float().cpu(),
        out["scores"][keep].float().cpu(),
        out["labels"][keep].cpu(),
        masks[keep][:, 0].cpu() > MASK_THRESHOLD if masks is not None else None,
    )


def _records(path: Path, dets: ImageDetections, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Results-format records of one image's kept detections (module docstring)."""
    segm = binary_to_rle(dets.masks) if dets.masks is not None else None
    xywh = box_convert(dets.boxes, "xyxy", "xywh").tolist()
    out = []
    for i, (box, score, label) in enumerate(zip(xywh, dets.scores.tolist(), dets.labels.tolist())):
        rec = {
            "image_id": str(path),
            "category_id": label + 1,
            "category_name": class_names[label],
            "bbox": [round(v, 2) for v in box],
            "score": round(score, 5),
        }
        if segm is not None:
            rec["segmentation"] = segm[i]
        out.append(rec)
    return out


def _unique_stem(path: Path, seen: set[str]) -> str:
    """The file's stem, with ``_2``, ``_3``... when another input had the same one."""
    stem, n = path.stem, 1
    while stem in seen:
        n += 1
        stem = f"{path.stem}_{n}"
    seen.add(stem)
    return stem
