"""Input-pipeline throughput (images/s): the detection training loader, and CIFAR's in-memory
batches beside what ResNet training consumes; tools/bench_data.py prints them.

Detection (`shapes_training_set`, `detection_loader_rate`): generated shapes JPEGs (once, cached)
through the training pipeline: safe decode, random flip, float conversion, through a DataLoader with
its worker processes and the grouped batch sampler. Resizing is not part of it: the detector
resizes (`model.input`).

CIFAR (`cifar_batches`, `pipeline_rate`, `training_rate`): the in-memory batches (indexing,
pad-crop-flip, on the device) alone, then full ResNet training steps (forward, backward, SGD) on
the batches that follow from the same stream, in one process. The timing is
`resdet.benchmarks.timing.time_total`: warm-up, then back-to-back calls synced at both ends.

COCO scale (`write_coco_like`, `coco_scale_rows`): a generated COCO-2017-train-like instances file
read through the records cache in fresh processes (`measure_records`): cold (parse and write the
cache) and warm (map it) times, the memory the main process holds after building the training
dataset (/proc/self/smaps_rollup: anonymous, and file-backed for the mapped cache), and the
private memory DataLoader workers gain by reading every record once, as items do without the
pixels, beyond what a worker that reads none dirties. The node projection is
`ranks x (held anonymous + workers x growth) + the mapped file once` (page cache, shared).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from resdet.benchmarks import timing
from resdet.classification.cifar import CifarSplit
from resdet.classification.loader import Batch, InMemoryTrainBatches
from resdet.classification.model import build_classifier
from resdet.classification.objective import ClassificationObjective
from resdet.config.classification import ClsModelConfig
from resdet.config.data import DataConfig
from resdet.data.build import build_detection_dataset, build_train_loader
from resdet.data.dataset import DetectionDataset
from resdet.data.records import ImageRecord
from resdet.engine.optim import build_optimizer


def shapes_training_set(
    *, num_images: int, image_size: int, workers: int, cache_dir: str | None = None
) -> tuple[DetectionDataset, DataConfig]:
    """A shapes training set of `num_images` JPEGs of about `image_size` pixels (each side drawn in
    [0.75, 1] x it; generated once, then cached) and the data config that loads it with `workers`
    processes."""
    data = DataConfig(
        train=[
            {
                "format": "shapes",
                "split": "train",
                "num_images": num_images,
                "image_size": image_size,
                "seed": 0,
            }
        ],
        cache_dir=cache_dir,
        num_workers=workers,
    )
    return build_detection_dataset(data, "train"), data


def detection_loader_rate(
    dataset: DetectionDataset, data: DataConfig, *, batch_size: int, batches: int
) -> float:
    """Images/s of the training loader over `batches` batches, after as many as it takes to start
    the workers and fill their prefetch queues."""
    loader = iter(build_train_loader(dataset, data, batch_size, seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds, sizes = timing.time_total(
            lambda: len(next(loader)[0]), batches, warmup=max(2, data.num_workers * 2)
        )
    return sum(sizes) / seconds


def cifar_batches(data: CifarSplit, batch_size: int, device: torch.device) -> Iterator[Batch]:
    """CIFAR training batches as training draws them: in memory, pad 4, crop and flip on
    `device`."""
    return iter(InMemoryTrainBatches(data, batch_size, pad=4, seed=0, device=device))


def pipeline_rate(batches: Iterator[Batch], count: int, device: torch.device) -> float:
    """Images/s of drawing `count` batches from `batches`, after one warm-up batch."""
    seconds, sizes = timing.time_total(
        lambda: len(next(batches)[0][0]), count, warmup=1, device=device
    )
    return sum(sizes) / seconds


def training_rate(
    batches: Iterator[Batch], *, depth: int, steps: int, batch_size: int, device: torch.device
) -> float:
    """Images/s of CIFAR ResNet-`depth` (option-A shortcuts) training steps (forward, backward,
    SGD) on `batches`: `steps` timed steps after one warm-up step."""
    net = build_classifier(ClsModelConfig(arch="cifar", depth=depth, shortcut="A"), 10).to(device)
    model = ClassificationObjective(net)
    opt = build_optimizer(model, lr=0.1, momentum=0.9, weight_decay=1e-4)

    def train_step() -> None:
        images, targets = next(batches)
        loss = model(images, targets)["loss_cls"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    seconds, _ = timing.time_total(train_step, steps, warmup=1, device=device)
    return steps * batch_size / seconds


# -- COCO at full size: records memory in the main process and in DataLoader workers -----------

#: COCO-2017 train: images, annotations per image, polygon points, crowd share (RLE)
COCO_TRAIN_IMAGES = 118_287
COCO_ANNS_PER_IMAGE = 7.3
COCO_POLYGON_POINTS = 24
COCO_CROWD_SHARE = 0.01
#: COCO's 80 category ids (1..90 without the 10 unused ones)
COCO_CATEGORY_IDS = [i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]


def _jpeg_sizes(jpeg_dir: Path | None, folder: Path, count: int = 8) -> list[tuple[Path, int, int]]:
    """(path, height, width) of up to `count` real JPEGs of `jpeg_dir`; without one, `count`
    flat-colour JPEGs of COCO-like sizes written to `folder`."""
    found = sorted(jpeg_dir.glob("*.jpg"))[:count] if jpeg_dir and jpeg_dir.is_dir() else []
    out = []
    for path in found:
        with Image.open(path) as im:
            w, h = im.size
        out.append((path.resolve(), h, w))
    if not out:
        folder.mkdir(parents=True, exist_ok=True)
        for k, (h, w) in enumerate([(480, 640), (640, 427), (427, 640), (500, 375)]):
            path = folder / f"source_{k}.jpg"
            Image.new("RGB", (w, h), (40 * k, 90, 160)).save(path)
            out.append((path.resolve(), h, w))
    return out


def _polygon(rng: np.random.Generator, h: int, w: int, points: int) -> tuple[list[float], list]:
    """A star-shaped polygon inside a random box of the image, coordinates with 2 decimals as
    COCO's; returns (bbox xywh, flat coordinates)."""
    bw, bh = rng.uniform(8, w * 0.6), rng.uniform(8, h * 0.6)
    x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    angles = np.sort(rng.uniform(0, 2 * np.pi, points))
    radii = rng.uniform(0.5, 1.0, points)
    xs = x0 + bw / 2 * (1 + radii * np.cos(angles))
    ys = y0 + bh / 2 * (1 + radii * np.sin(angles))
    coords = np.round(np.stack([xs, ys], 1).reshape(-1), 2)
    x1, y1 = coords[0::2].min(), coords[1::2].min()
    bbox = [
        float(x1),
        float(y1),
        round(coords[0::2].max() - x1, 2),
        round(coords[1::2].max() - y1, 2),
    ]
    return bbox, coords.tolist()


def write_coco_like(
    out_dir: str | Path,
    *,
    images: int = COCO_TRAIN_IMAGES,
    seed: int = 0,
    jpeg_dir: str | Path | None = None,
) -> Path:
    """A COCO-2017-train-like instances file (`out_dir/instances.json`) and its image folder
    (`out_dir/images`: symlinks to a few real JPEGs of `jpeg_dir`, sizes as they are): `images`
    images, Poisson(7.3) annotations each, ~24-point polygons (one in ten objects in 2 parts), 1%
    crowd with uncompressed RLE, 80 categories with COCO's ids. Seeded: the same arguments give
    the same file. Written once; an existing complete file is reused."""
    out = Path(out_dir)
    path = out / "instances.json"
    if path.is_file():
        return path
    image_dir = out / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    sources = _jpeg_sizes(Path(jpeg_dir) if jpeg_dir else None, out / "sources")
    rng = np.random.default_rng(seed)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    aid = 0
    with open(tmp, "w") as f:
        f.write('{"info": {"description": "COCO-2017-train-like, generated"}, "images": [')
        kinds = rng.integers(0, len(sources), images)
        for i in range(images):
            src, h, w = sources[kinds[i]]
            name = f"{i + 1:012d}.jpg"
            link = image_dir / name
            if not link.is_symlink():
                link.symlink_to(src)
            rec = {"id": i + 1, "file_name": name, "height": h, "width": w, "license": 1}
            f.write(("," if i else "") + json.dumps(rec))
        f.write('], "annotations": [')
        sep = ""
        for i in range(images):
            _, h, w = sources[kinds[i]]
            anns = []
            for _ in range(rng.poisson(COCO_ANNS_PER_IMAGE)):
                aid += 1
                cat = COCO_CATEGORY_IDS[rng.integers(0, len(COCO_CATEGORY_IDS))]
                ann = {"id": aid, "image_id": i + 1, "category_id": cat}
                if rng.random() < COCO_CROWD_SHARE:
                    bbox, _ = _polygon(rng, h, w, 4)
                    cuts = np.sort(rng.integers(1, h * w, 2 * rng.integers(5, 60)))
                    runs = np.diff(np.concatenate([[0], cuts, [h * w]]))
                    seg: Any = {"counts": runs.tolist(), "size": [h, w]}
                    ann.update(iscrowd=1)
                else:
                    parts = 2 if rng.random() < 0.1 else 1
                    seg, boxes = [], []
                    for _ in range(parts):
                        points = int(rng.integers(12, 37)) // parts + 3
                        box, coords = _polygon(rng, h, w, points)
                        seg.append(coords)
                        boxes.append(box)
                    bbox = boxes[0]
                    ann.update(iscrowd=0)
                area = round(bbox[2] * bbox[3] * 0.6, 2)
                ann.update(bbox=bbox, area=area, segmentation=seg)
                anns.append(json.dumps(ann))
            if anns:
                f.write(sep + ",".join(anns))
                sep = ","
        cats = [{"id": c, "name": f"class_{c}", "supercategory": "x"} for c in COCO_CATEGORY_IDS]
        f.write('], "categories": ' + json.dumps(cats) + "}")
    os.replace(tmp, path)
    return path


def _memory() -> dict[str, int]:
    """This process's /proc/self/smaps_rollup counters (bytes): Rss, Anonymous, Private_*..."""
    out = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                out[key] = int(parts[0]) * 1024
    out["Private"] = out["Private_Clean"] + out["Private_Dirty"]
    out["RssFile"] = out["Rss"] - out["Anonymous"]
    return out


class _TouchAllRecords(torch.utils.data.Dataset):
    """DataLoader items that each make one worker read every record as `DetectionDataset` items
    do, without the pixels: the record, its training boxes and labels, and each polygon part as
    pycocotools' rasteriser reads it (`np.array(part, dtype=np.double)`); then collect garbage, as
    the interpreter eventually does, and report that worker's memory."""

    def __init__(self, records: Any, workers: int) -> None:
        self.records, self.workers = records, workers

    def __len__(self) -> int:
        return self.workers

    def __getitem__(self, k: int) -> dict[str, Any]:
        records, n = self.records, 0
        for i in range(len(records)):
            r = records[i]
            keep = ~r.difficult
            n += len(r.boxes[keep]) + len(r.labels[keep])
            for s, kept in zip(r.segmentations or [], keep):
                if kept and not isinstance(s, dict):
                    n += sum(len(np.array(p, dtype=np.double)) for p in s)
        gc.collect()
        return {"pid": os.getpid(), "memory": _memory(), "touched": n}


def _touch_in_workers(records: Any, workers: int) -> list[dict]:
    loader = torch.utils.data.DataLoader(
        _TouchAllRecords(records, workers),
        batch_size=None,
        num_workers=workers,
        multiprocessing_context="fork",
    )
    return list(loader)


def _with_python_floats(r: ImageRecord) -> ImageRecord:
    """`r` with its polygons as lists of Python floats, as the COCO reader made them before
    `resdet.data.compact`."""
    if r.segmentations is not None:
        r.segmentations = [
            s if isinstance(s, dict) else [p.tolist() for p in s] for s in r.segmentations
        ]
    return r


def measure_records(
    ann_file: str,
    image_dir: str,
    *,
    masks: bool,
    cache_dir: str,
    workers: int = 4,
    layout: str = "compact",
) -> dict[str, Any]:
    """In this process (a fresh one: the caller starts it): read the COCO file through the records
    cache (`cache_dir`: empty for a cold read, filled for a warm one), build the training
    dataset, and report times and memory; then `workers` forked DataLoader workers each read every
    record (`_TouchAllRecords`) and report their private memory (/proc smaps_rollup
    Private_Clean + Private_Dirty), less that of workers forked before the records were read that
    read none (the growth the records cause). `layout="lists"`: the records
    held as the list of `ImageRecord`s with polygons as lists of Python floats, as before
    `resdet.data.compact` (the "before" row; built from the cache, so its time is not a read)."""
    import warnings

    from resdet.data.coco import load_coco

    # workers that read no record: what any forked worker of this process dirties on its own
    baseline = [r["memory"]["Private"] for r in _touch_in_workers([], workers)]
    gc.collect()
    base = _memory()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = load_coco(ann_file, image_dir, masks=masks, cache=True, cache_dir=cache_dir)
        t1 = time.perf_counter()
        dataset = DetectionDataset([source], train=True, masks=masks)
    t2 = time.perf_counter()
    records: Any = dataset.records
    if layout == "lists":
        records = [_with_python_floats(r) for r in records]
        source.records = dataset.records = records  # nothing else holds the store
        del dataset
    gc.collect()
    held = _memory()
    reports = _touch_in_workers(records, workers)
    return {
        "images": len(records),
        "read_s": t1 - t0,
        "dataset_s": t2 - t1,
        "held_rss": held["Rss"] - base["Rss"],
        "held_anon": held["Anonymous"] - base["Anonymous"],
        "held_file": held["RssFile"] - base["RssFile"],
        "worker_baseline": baseline,
        "worker_private": [r["memory"]["Private"] for r in reports],
        "worker_growth": [r["memory"]["Private"] - max(baseline) for r in reports],
        "worker_touched": [r["touched"] for r in reports],
    }


def measure_in_subprocess(**kwargs: Any) -> dict[str, Any]:
    """`measure_records(**kwargs)` in a fresh interpreter (its memory is the records' alone)."""
    code = (
        "import json, sys\n"
        "from resdet.benchmarks.data_speed import measure_records\n"
        "print('RESULT ' + json.dumps(measure_records(**json.loads(sys.argv[1]))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"measuring {kwargs} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def coco_scale_rows(
    ann_file: Path,
    image_dir: Path,
    work_dir: Path,
    *,
    workers: int = 4,
    ranks: int = 8,
    before: bool = False,
) -> list[dict[str, Any]]:
    """One row per records kind (boxes, masks; with `before` also masks held as Python lists):
    cold read (parse + write the cache) and warm read (map) in fresh processes, the memory each
    holds, workers' private growth, and the node projection
    `ranks x (held anonymous + workers x worker growth) + mapped cache file once` (the file's
    pages are page cache, shared by every process of the node)."""
    rows = []
    for masks in (False, True):
        cache = work_dir / f"cache_{'masks' if masks else 'boxes'}"
        shutil.rmtree(cache, ignore_errors=True)
        args = dict(
            ann_file=str(ann_file),
            image_dir=str(image_dir),
            masks=masks,
            workers=workers,
            cache_dir=str(cache),
        )
        cold = measure_in_subprocess(**args)
        warm = measure_in_subprocess(**args)
        rows.append(_row("masks" if masks else "boxes", cold, warm, workers, ranks))
        if before and masks:
            lists = measure_in_subprocess(layout="lists", **args)
            rows.append(_row("masks as Python lists (before)", None, lists, workers, ranks))
    return rows


def _row(
    name: str, cold: dict[str, Any] | None, warm: dict[str, Any], workers: int, ranks: int
) -> dict[str, Any]:
    growth = max(warm["worker_growth"])
    # the lists row maps the cache only to build its lists: that layout holds no file
    mapped = warm["held_file"] if cold is not None else 0
    return {
        "records": name,
        "images": warm["images"],
        "cold_s": None if cold is None else cold["read_s"] + cold["dataset_s"],
        "warm_s": None if cold is None else warm["read_s"] + warm["dataset_s"],
        "held_cold": None if cold is None else cold["held_rss"],
        "held_anon": warm["held_anon"],
        "held_file": mapped,
        "worker_growth": growth,
        "node": ranks * max(0, warm["held_anon"] + workers * growth) + mapped,
    }


def format_scale_table(rows: list[dict[str, Any]], *, workers: int, ranks: int) -> str:
    """The rows of `coco_scale_rows` as one Markdown table."""

    def size(v: float | None) -> str:
        if v is None:
            return "-"
        return f"{v / 1e9:.2f} GB" if abs(v) >= 1e9 else f"{v / 1e6:.1f} MB"

    def sec(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} s" if v < 10 else f"{v:.0f} s"

    head = (
        "| records | images | cold: parse + cache | warm: map | held after cold (RSS) "
        "| held warm: anonymous + mapped file | worker private growth (max of "
        f"{workers}) | node, {ranks} ranks x {workers} workers |"
    )
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        lines.append(
            f"| {r['records']} | {r['images']:,} | {sec(r['cold_s'])} | {sec(r['warm_s'])} "
            f"| {size(r['held_cold'])} | {size(r['held_anon'])} + {size(r['held_file'])} "
            f"| {size(r['worker_growth'])} | {size(r['node'])} |"
        )
    return "\n".join(lines)


def first_step_seconds(
    train_det: Path, config: Path, ann_file: Path, image_dir: Path, cache_dir: Path, out: Path
) -> float:
    """Wall seconds from launching `tools/train_det.py` (`train_det`) on `config`, trained on the
    COCO file (`data.train`, no test set, one iteration of 2 images, a random-init backbone), to
    the end of its first step: the time of the process until `metrics.jsonl` holds its first line
    (the process is then stopped). Records come from, or go to, `cache_dir`."""
    shutil.rmtree(out, ignore_errors=True)
    entry = f"data.train=[{{format: coco, ann_file: {ann_file}, image_dir: {image_dir}}}]"
    command = [
        sys.executable, str(train_det), str(config), "--no-progress", "--output-dir", str(out),
        entry, "data.test=[]", "data.num_workers=0", "solver.ims_per_batch=2", "solver.max_iter=50",
        "solver.log_period=1", "solver.checkpoint_period=1000", "test.eval_period=0",
        "model.backbone.weights=null",
    ]  # fmt: skip
    log = out / "metrics.jsonl"
    start = time.perf_counter()
    proc = subprocess.Popen(
        command,
        env={**os.environ, "RESDET_CACHE": str(cache_dir)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while not (log.is_file() and log.read_text().strip()):
            if proc.poll() is not None:
                raise RuntimeError(f"{train_det} ended before its first step: {proc.stderr.read()}")
            time.sleep(0.05)
        return time.perf_counter() - start
    finally:
        proc.kill()
        proc.wait()
