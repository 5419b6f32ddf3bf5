"""The two implementations of COCO's box and mask scoring behind `test.coco_backend`.

- `pycocotools`: the reference (cocoapi's `COCOeval`), and the fallback.
- `faster`: faster-coco-eval's `COCOeval_faster` (matching and accumulation in C++; 5,000 images
  x 100 detections about 7x faster), its numbers made exactly pycocotools' (below).
- `auto` (default): `faster` when faster-coco-eval is importable and its numbers equal
  pycocotools' on a built-in case (checked once per process, `faster_is_exact`), else
  `pycocotools` (with one warning when it is installed but differs).

Exactness. faster-coco-eval matches, sorts and samples as pycocotools does, but computes a
detection's precision as `tp / (tp + fp)` where pycocotools computes `tp / (tp + fp + eps)`,
`eps = 2**-52`. The two agree wherever `tp + fp >= 2` (the `eps` vanishes in the rounding) and
whenever `tp = 0`; they differ only where a curve's only true positive so far is its first
counted detection: 1.0 against pycocotools' `1 / (1 + eps)`. That value reaches the sampled
precision (the envelope) exactly in the curves whose run of true positives before the first false
positive is one long, and there it is every sampled 1.0. `_pycocotools_precision` finds those
curves and writes `1 / (1 + eps)` there: a run of one or more shows as precision 1.0 at recall 0,
a run of two or more as 1.0 at recall `2 / n` (the second true positive; `n` the curve's counted
ground-truth objects), a point `_add_probe_points` adds to the recall points of the same single
evaluation and takes out after. The 12 stats and the per-class APs are then pycocotools' to the
last bit (`tests/evaluation/test_coco_backends.py`); a curve whose recalls are not whole counts of
that `n` is an `InexactBackendError` (the evaluator then scores with pycocotools).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from resdet.config.loader import ConfigError
from resdet.evaluation.detections import Detections
from resdet.evaluation.rle import binary_to_rle, rle_area

BACKENDS = ("auto", "faster", "pycocotools")
#: what `test.coco_backend=faster` needs
FASTER_PACKAGE = "faster-coco-eval>=1.6"
#: pycocotools' precision of a curve's first detection when it is a true positive
ONE_TP_PRECISION = 1.0 / (1.0 + np.spacing(1.0))


class InexactBackendError(RuntimeError):
    """faster-coco-eval's result could not be made pycocotools' (a count that does not add up)."""


def _faster() -> Any | None:
    """The faster-coco-eval module, or None when it cannot be imported."""
    try:
        import faster_coco_eval
        import faster_coco_eval.faster_eval_api_cpp  # noqa: F401  (the accumulation, reused)
    except ImportError:
        return None
    return faster_coco_eval


def resolve_backend(requested: str) -> str:
    """`test.coco_backend` -> the backend that scores: "faster" or "pycocotools" (module
    docstring). `faster` without the package is a `ConfigError` naming the key and the package."""
    if requested not in BACKENDS:
        raise ConfigError(f"test.coco_backend: {requested!r} is not one of {list(BACKENDS)}")
    if requested == "pycocotools":
        return requested
    available = _faster() is not None
    if requested == "faster":
        if not available:
            raise ConfigError(
                f"test.coco_backend=faster needs the package faster-coco-eval, which is not "
                f"installed: pip install '{FASTER_PACKAGE}', or set test.coco_backend=auto "
                "(pycocotools when it is absent) or pycocotools"
            )
        return "faster"
    return "faster" if available and faster_is_exact() else "pycocotools"


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _coco_class(backend: str) -> type:
    if backend == "faster":
        from faster_coco_eval import COCO
    else:
        from pycocotools.coco import COCO
    return COCO


def load_ground_truth(backend: str, source: str | dict[str, Any]) -> Any:
    """`backend`'s COCO object of an annotation file (path), or of an annotation dict (copied)."""
    coco_cls = _coco_class(backend)
    with _quiet():
        if isinstance(source, dict):
            gt = coco_cls()
            gt.dataset = copy.deepcopy(source)
            gt.createIndex()
            return gt
        return coco_cls(str(source))


def results_coco(backend: str, gt: Any, dets: Detections, iou_type: str) -> Any:
    """`backend`'s COCO object of `dets`, as `COCO.loadRes` builds it, without reading a record
    twice. Boxes (`iou_type="bbox"`): `bbox` and area w * h. Masks (`"segm"`): the RLE, no `bbox`,
    and the mask's area, so the mask decides small / medium / large (detectron2's rule; with a
    `bbox` `loadRes` would take the box's area)."""
    ids = range(1, len(dets) + 1)
    image_ids, categories, scores = (
        dets.image_id_list(),
        dets.category_ids.tolist(),
        dets.scores.tolist(),
    )
    if iou_type == "segm":
        rles = dets.rles()
        anns = [
            {
                "id": i,
                "image_id": im,
                "category_id": c,
                "segmentation": r,
                "score": s,
                "area": a,
                "iscrowd": 0,
            }
            for i, im, c, r, s, a in zip(ids, image_ids, categories, rles, scores, rle_area(rles))
        ]
    else:
        boxes = dets.boxes.astype(np.float64)
        anns = [
            {
                "id": i,
                "image_id": im,
                "category_id": c,
                "bbox": b,
                "score": s,
                "area": a,
                "iscrowd": 0,
            }
            for i, im, c, b, s, a in zip(
                ids,
                image_ids,
                categories,
                boxes.tolist(),
                scores,
                (boxes[:, 2] * boxes[:, 3]).tolist(),
            )
        ]
    dt = _coco_class(backend)()
    dt.dataset = {
        "images": list(gt.dataset["images"]),
        "categories": list(gt.dataset["categories"]),
        "annotations": anns,
    }
    with _quiet():
        dt.createIndex()
    return dt


@dataclass
class Scores:
    """One COCOeval: the 12 summary stats, the precision array `[T, R, K, A, M]` (IoU thresholds,
    recall points, categories, area ranges, max detections; -1 = undefined) and its category ids
    in K order."""

    stats: list[float]
    precision: np.ndarray
    category_ids: list[int]


def score(backend: str, gt: Any, dets: Detections, iou_type: str, image_ids: list[Any]) -> Scores:
    """COCOeval of `dets` against `gt` (a `load_ground_truth` object of the same backend) on
    `image_ids`, by `backend` ("faster" or "pycocotools")."""
    dt = results_coco(backend, gt, dets, iou_type)
    with _quiet():
        if backend == "faster":
            from faster_coco_eval import COCOeval_faster

            ev = COCOeval_faster(gt, dt, iou_type, print_function=_silent)
        else:
            from pycocotools.cocoeval import COCOeval

            ev = COCOeval(gt, dt, iou_type)
        ev.params.imgIds = sorted(image_ids)
        if backend == "faster":
            probe = _add_probe_points(ev)
        ev.evaluate()
        ev.accumulate()
        if backend == "faster":
            _pycocotools_precision(ev, *probe)
        ev.summarize()
    return Scores(
        [float(v) for v in ev.stats[:12]], ev.eval["precision"], [int(c) for c in ev.params.catIds]
    )


def _silent(*_: Any, **__: Any) -> None:
    pass


def _counted_ground_truth(ev: Any) -> np.ndarray:
    """(K, A): the ground-truth objects each precision curve counts (its recall's denominator):
    not crowd and with `area` in the range, over the evaluated images."""
    p = ev.params
    cat_ids = sorted({int(c) for c in p.catIds})
    cat_index = {c: k for k, c in enumerate(cat_ids)}
    anns = ev.cocoGt.loadAnns(ev.cocoGt.getAnnIds(imgIds=list(p.imgIds), catIds=cat_ids))
    cats = np.array([cat_index[a["category_id"]] for a in anns], dtype=np.int64)
    area = np.array([float(a.get("area", 0.0)) for a in anns], dtype=np.float64)
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    counts = np.zeros((len(cat_ids), len(p.areaRng)), dtype=np.int64)
    for a, (lo, hi) in enumerate(p.areaRng):
        keep = ~crowd & (area >= lo) & (area <= hi)
        counts[:, a] = np.bincount(cats[keep], minlength=len(cat_ids))
    return counts


def _add_probe_points(ev: Any) -> tuple[np.ndarray, np.ndarray]:
    """Before a faster-coco-eval evaluation: append to the recall points one point `2 / n` for
    each curve's `n` counted ground-truth objects (the recall of its second true positive), so
    that the one accumulation also samples there. Returns (the counts (K, A), the points)."""
    counts = _counted_ground_truth(ev)
    points = np.unique(2.0 / np.maximum(counts, 1))
    ev.params.recThrs = np.concatenate([ev.params.recThrs, points])
    return counts, points


def _pycocotools_precision(ev: Any, counts: np.ndarray, points: np.ndarray) -> None:
    """After `_add_probe_points`' evaluation: `ev.eval["precision"]` made pycocotools' (module
    docstring) and the probe points taken out again, in place. An `InexactBackendError` where the
    counted ground truth does not explain the recalls."""
    standard = len(ev.params.recThrs) - len(points)
    ev.params.recThrs = ev.params.recThrs[:standard]
    sampled = ev.eval["precision"]  # [T, R + probes, K, A, M]
    precision = np.ascontiguousarray(sampled[:, :standard])
    ev.eval["precision"] = precision
    ev.eval["scores"] = np.ascontiguousarray(ev.eval["scores"][:, :standard])
    recall = ev.eval["recall"]  # [T, K, A, M]
    n = counts[None, :, :, None]
    defined = recall > -1
    tp = np.rint(recall * n)
    if not np.array_equal(defined, np.broadcast_to(n > 0, recall.shape)) or not np.array_equal(
        (tp / np.maximum(n, 1))[defined], recall[defined]
    ):
        raise InexactBackendError(
            "faster-coco-eval's recalls are not whole counts of the ground truth pycocotools counts"
        )
    one_run = precision[:, 0] == 1.0  # [T,K,A,M]: the curve starts with >= 1 true positive
    # recall 2 / n is reached at the second true positive: precision 1.0 there iff the run of
    # true positives before the first false positive is >= 2 long
    column = standard + np.searchsorted(points, 2.0 / np.maximum(counts, 1))  # (K, A)
    index = np.broadcast_to(
        column[None, None, :, :, None], (sampled.shape[0], 1, *recall.shape[1:])
    )
    two_run = np.take_along_axis(sampled, index, axis=1)[:, 0] == 1.0  # [T,K,A,M]
    fix = (one_run & ~two_run)[:, None] & (precision == 1.0)
    precision[fix] = ONE_TP_PRECISION


# ---- the built-in check behind `auto` ----


def _check_case() -> tuple[dict[str, Any], Detections]:
    """A small ground truth and detections that reach the rules where implementations part: crowd
    regions, all three area ranges, an image without objects, score ties, an image with more than
    100 detections of one class, curves whose first detection is the only true positive before a
    false positive, masks."""
    rng = np.random.default_rng(0)
    size = (240, 320)  # H, W
    categories = [{"id": c, "name": f"c{c}"} for c in (1, 3, 7)]
    images, gt_anns, rows = [], [], []

    def rect_mask(x: float, y: float, w: float, h: float) -> np.ndarray:
        m = np.zeros(size, dtype=np.uint8)
        m[int(y) : int(y + h) + 1, int(x) : int(x + w) + 1] = 1
        return m

    for i in range(10):
        images.append({"id": 100 + i, "height": size[0], "width": size[1]})
        for j in range(0 if i == 0 else int(rng.integers(1, 6))):
            side = float(np.exp(rng.uniform(np.log(6), np.log(200))))
            w, h = side, side * float(rng.uniform(0.6, 1.2))
            x, y = float(rng.uniform(0, size[1] - w)), float(rng.uniform(0, size[0] - h))
            crowd = int(j == 4)
            mask = rect_mask(x, y, w, h)
            gt_anns.append(
                {
                    "id": len(gt_anns) + 1,
                    "image_id": 100 + i,
                    "category_id": categories[int(rng.integers(0, 3))]["id"],
                    "bbox": [x, y, w, h],
                    "area": float(mask.sum()) * 0.9,
                    "iscrowd": crowd,
                    "segmentation": binary_to_rle(mask[None])[0],
                }
            )
            for _ in range(int(rng.integers(1, 4))):
                jitter = rng.normal(0, 0.15, 4) * np.array([w, h, w, h])
                box = [
                    x + jitter[0],
                    y + jitter[1],
                    max(1.0, w + jitter[2]),
                    max(1.0, h + jitter[3]),
                ]
                rows.append((100 + i, gt_anns[-1]["category_id"], box, float(rng.uniform(0.3, 1))))
        extra = 110 if i == 3 else 6
        for _ in range(extra):
            side = float(rng.uniform(4, 120))
            box = [
                float(rng.uniform(0, size[1] - side)),
                float(rng.uniform(0, size[0] - side)),
                side,
                side,
            ]
            category = 3 if i == 3 else categories[int(rng.integers(0, 3))]["id"]
            rows.append((100 + i, category, box, float(rng.uniform(0, 0.8))))
    scores = np.round(np.array([r[3] for r in rows]), 2)  # ties
    boxes = np.array([r[2] for r in rows], dtype=np.float32)
    masks = np.stack([rect_mask(*np.clip(b, 0, None)) for b in boxes.astype(np.float64)])
    rles = binary_to_rle(masks)
    dets = Detections(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.int64),
        boxes,
        scores.astype(np.float32),
        np.array([r["counts"] for r in rles], dtype=object),
        np.array([r["size"] for r in rles], dtype=np.int32),
    )
    return {"images": images, "annotations": gt_anns, "categories": categories}, dets


def backends_agree(gt: dict[str, Any], dets: Detections) -> bool:
    """Whether both backends give the same 12 stats and precision arrays, boxes and masks."""
    image_ids = [im["id"] for im in gt["images"]]
    for iou_type in ("bbox", "segm"):
        a, b = (
            score(backend, load_ground_truth(backend, gt), dets, iou_type, image_ids)
            for backend in ("pycocotools", "faster")
        )
        if a.stats != b.stats or not np.array_equal(a.precision, b.precision):
            return False
    return True


@functools.lru_cache(maxsize=1)
def faster_is_exact() -> bool:
    """Whether this faster-coco-eval scores the built-in case (`_check_case`) exactly as
    pycocotools does; warns once when it does not."""
    try:
        same = backends_agree(*_check_case())
        reason = "gives other numbers than pycocotools"
    except Exception as e:  # an API that moved: the fallback, said once
        same, reason = False, f"failed on it ({type(e).__name__}: {e})"
    if not same:
        version = getattr(_faster(), "__version__", "?")
        warnings.warn(
            f"faster-coco-eval {version} {reason} on resdet's built-in check: COCO scoring uses "
            "pycocotools (test.coco_backend=auto); test.coco_backend=faster forces it",
            RuntimeWarning,
            stacklevel=2,
        )
    return same
