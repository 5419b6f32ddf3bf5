"""The GPU suite, prepared once for whoever is lent a GPU: one run of at most ~9 minutes.

    python lab/gpu_suite.py --prepare       # here: .gpu/cifar10_jpeg.tar and the wheels the GPU
                                              # machine lacks
    python3 lab/gpu_suite.py --out $OUT     # there (the command --prepare prints installs the
                                              # wheels first)
    python lab/gpu_suite.py --smoke --out /tmp/suite   # CPU, tiny sizes: checks the suite itself

Parts, in this order, each in its own process with its own time limit (one that fails or overruns
is reported as such and the others still run):
  det    tools/benchmark.py rows of README "Performance": R50-FPN vs torchvision at 800x1333, bf16,
         training batch 8 and inference batch 1; R101-C4 at batch 8.
  cls    ResNet-50 ImageNet-style training images/s at 224 vs torchvision's resnet50 (bf16).
  cifar  ResNet-20 on CIFAR-10, the paper's full schedule (64k iterations of 128, lr 0.1 /10 at
         32k and 48k), bf16 + channels_last, data decoded once and augmented on the GPU; final
         test error. It gets the time the other two left of TOTAL_S; stopped there, it reports
         its last evaluation (every 8k iterations) instead.
Writes `gpu_suite.json` (every figure) and `gpu_suite.md` (one table) under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10_jpeg"
PACK = ROOT / ".gpu"
WHEELS = ROOT / ".whl"
#: packages resdet imports that the GPU machine's image lacks (it has torch, torchvision, timm,
#: yaml, ...): pycocotools as a compiled wheel for its Python 3.12, the others pure Python
#: (fvcore ships no wheel)
COMPILED_THERE = ("pycocotools",)
PURE_THERE = ("fvcore", "iopath", "yacs", "termcolor")
#: seconds for the whole suite on the GPU, and for the two bounded parts; the CIFAR run, last,
#: gets what is left (about 340 s), and reports its last evaluation if it is stopped
TOTAL_S = 540
LIMITS = {"det": 150, "cls": 50}
#: where the CIFAR run writes, outside the part's scratch folder so a stopped run can still be read
CIFAR_RUN = Path(tempfile.gettempdir()) / "gpu_suite_resnet20"


def prepare() -> None:
    """Pack CIFAR-10 (JPEG tree, one tar) and download the missing wheels into ignored folders."""
    PACK.mkdir(exist_ok=True)
    # gzip: the 60,000 tar headers and paddings (~45 MB) shrink to almost nothing,
    # the JPEGs stay ~53 MB
    tar = PACK / "cifar10_jpeg.tar.gz"
    if not tar.is_file():
        partial = PACK / "partial.tar.gz"
        with tarfile.open(partial, "w:gz") as t:
            t.add(SHARED_CIFAR, arcname="cifar10_jpeg")
        partial.rename(tar)
    WHEELS.mkdir(exist_ok=True)
    platforms = [
        f"--platform={p}"
        for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
    ]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            *platforms,
            "-d",
            str(WHEELS),
            *COMPILED_THERE,
        ],
        check=True,
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(WHEELS), *PURE_THERE],
        check=True,
    )
    size = sum(f.stat().st_size for f in [tar, *WHEELS.iterdir()]) / 2**20
    print(
        f"packed {tar} and {len(list(WHEELS.iterdir()))} wheels ({size:.0f} MiB); "
        "on the GPU machine run "
        f"(carry .gpu and .whl):\n  python3 -m pip install -q --no-index --no-deps --no-compile "
        f"--target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 "
        f"python3 lab/gpu_suite.py --out $OUT"
    )


def _cifar_folder(source: Path, work: Path) -> Path:
    if source.name.endswith((".tar", ".tar.gz")):
        with tarfile.open(source) as t:
            t.extractall(work, filter="data")
        return work / "cifar10_jpeg"
    return source


def _tiny_cifar(work: Path) -> Path:
    """Two 32x32 PNGs per class and split, for --smoke."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in range(10):
            (work / "tiny" / split / f"c{c}").mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    work / "tiny" / split / f"c{c}" / f"{i}.png"
                )
    return work / "tiny"


def part_cifar(args: argparse.Namespace, work: Path) -> dict:
    from resdet.config.classification import load_cls_config
    from resdet.runs.pretraining import pretrain

    folder = _tiny_cifar(work) if args.smoke else _cifar_folder(Path(args.cifar), work)
    device = "cpu" if args.smoke else "cuda"
    overrides = [
        f"data.path={folder}",
        f"output_dir={CIFAR_RUN}",
        "data.num_workers=0",
        "model.channels_last=true",
        "test.eval_period=8000",
        "solver.log_period=500",
        f"solver.amp={'none' if args.smoke else 'bf16'}",
    ]
    if args.smoke:
        overrides += [
            "model.depth=8",
            "solver.max_iter=4",
            "solver.steps=[2,3]",
            "solver.ims_per_batch=4",
            "test.eval_period=0",
            "solver.log_period=1",
            "test.ims_per_batch=8",
        ]
    os.environ["RESDET_CACHE"] = str(work / "cache")
    cfg = load_cls_config(ROOT / "configs" / "cls_resnet20_cifar10.yaml", overrides)
    t0 = time.perf_counter()
    result = pretrain(cfg, progress=False)
    return {
        "device": device,
        "depth": cfg.model.depth,
        "iterations": cfg.solver.max_iter,
        "test_error": result.metrics["top1_err"],
        "paper_test_error": 8.75,
        "minutes": (time.perf_counter() - t0) / 60,
    }


def part_det(args: argparse.Namespace, work: Path) -> dict:
    from tools import benchmark

    if args.smoke:
        common = [
            "--device",
            "cpu",
            "--image-size",
            "64",
            "--iters",
            "1",
            "--warmup",
            "0",
            "--no-flops",
        ]
    else:
        common = [
            "--device",
            "cuda",
            "--amp",
            "bf16",
            "--channels-last",
            "--image-size",
            "800x1333",
            "--iters",
            "20",
            "--warmup",
            "3",
        ]
    tv = str(ROOT / "configs" / "torchvision_frcnn_r50_fpn_coco.yaml")
    rows = {
        "r50_fpn_b8": [
            tv,
            "--compare",
            "torchvision",
            *common,
            "--batch-size",
            "1" if args.smoke else "8",
        ],
        "r50_fpn_b1": [tv, "--compare", "torchvision", *common, "--batch-size", "1"],
        "r101_c4_b8": [
            str(ROOT / "configs" / "frcnn_r101_coco.yaml"),
            *common,
            "--batch-size",
            "1" if args.smoke else "8",
        ],
    }
    if args.smoke:  # one row checks the plumbing; the R101-C4 build alone takes a minute on 2 cores
        rows = {"r50_fpn_b1": rows["r50_fpn_b1"]}
    return {name: benchmark.main(argv) for name, argv in rows.items()}


def part_cls(args: argparse.Namespace, work: Path) -> dict:
    from resdet.benchmarks.classifier_speed import compare_resnet50

    if args.smoke:
        r = compare_resnet50(
            device="cpu", batch_size=2, image_size=32, rounds=1, warmup=0, depth=18
        )
    else:
        r = compare_resnet50(
            device="cuda",
            batch_size=256,
            image_size=224,
            amp="bf16",
            channels_last=True,
            rounds=20,
            warmup=5,
        )
    return asdict(r)


PARTS = {"det": part_det, "cls": part_cls, "cifar": part_cifar}


def last_cifar_eval() -> dict:
    """The last test evaluation a stopped CIFAR run logged: `{"iteration", "test_error"}` or {}."""
    from resdet.io.run_dir import metrics_log_path, read_metrics_log

    if not metrics_log_path(CIFAR_RUN).is_file():
        return {}
    evals = [r for r in read_metrics_log(CIFAR_RUN) if r.get("eval/top1_err") is not None]
    if not evals:
        return {}
    return {"iteration": evals[-1]["iteration"], "test_error": evals[-1]["eval/top1_err"]}


def run_parts(args: argparse.Namespace) -> dict:
    """Each part in a child process (`--part NAME`) under its limit;
    returns {part: figures or error}."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    start = time.perf_counter()
    shutil.rmtree(CIFAR_RUN, ignore_errors=True)
    for name in args.parts:
        child = [sys.executable, __file__, "--part", name, "--out", str(out), "--cifar", args.cifar]
        child += ["--smoke"] if args.smoke else []
        t0 = time.perf_counter()
        limit = LIMITS.get(name, TOTAL_S - (t0 - start))
        try:
            proc = subprocess.run(child, timeout=None if args.smoke else limit)
            ok = proc.returncode == 0 and (out / f"part_{name}.json").is_file()
            results[name] = (
                json.loads((out / f"part_{name}.json").read_text())
                if ok
                else {"error": f"exit status {proc.returncode}"}
            )
        except subprocess.TimeoutExpired:
            results[name] = {"error": f"stopped at its {limit:.0f} s limit"}
            if name == "cifar":
                results[name]["last_evaluation"] = last_cifar_eval()
        results[name]["wall_s"] = round(time.perf_counter() - t0, 1)
        print(
            f"[gpu_suite] {name}: {results[name].get('error', 'done')} "
            f"in {results[name]['wall_s']} s",
            flush=True,
        )
    import torch

    results["machine"] = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "smoke": args.smoke,
    }
    (out / "gpu_suite.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "gpu_suite.md").write_text(markdown(results))
    print(markdown(results))
    return results


def _fmt(row: dict, *keys: str, spec: str = ".2f") -> str:
    for k in keys:
        row = row.get(k, {}) if isinstance(row, dict) else {}
    return format(row, spec) if isinstance(row, (int, float)) else "n/a"


def markdown(r: dict) -> str:
    """One table of the suite's figures."""
    m = r["machine"]
    lines = [
        f"GPU suite on {m['device']} (torch {m['torch']}{', smoke sizes' if m['smoke'] else ''})",
        "",
        "| part | figure | ours | reference | ratio |",
        "|---|---|---|---|---|",
    ]
    c = r.get("cifar", {})
    if "last_evaluation" in c:  # stopped at its limit: the last evaluation it logged
        c = {**c, **c["last_evaluation"], "iterations": c["last_evaluation"].get("iteration")}
    lines.append(
        f"| cifar | ResNet-{c.get('depth', 20)} test error %, {c.get('iterations', 64000)} it, "
        f"{_fmt(c, 'minutes', spec='.1f')} min | {_fmt(c, 'test_error')} | 8.75 (paper) | |"
    )
    d = r.get("det", {})
    for name, label in (
        ("r50_fpn_b8", "R50-FPN train img/s, batch 8"),
        ("r50_fpn_b1", "R50-FPN infer img/s, batch 1"),
    ):
        key = "train_images_per_s" if "train" in label else "infer_images_per_s"
        ratio_key = "train" if "train" in label else "infer"
        lines.append(
            f"| det | {label} | {_fmt(d, name, 'ours', key)} | {_fmt(d, name, 'torchvision', key)} "
            f"| {_fmt(d, name, 'ratio', ratio_key)} |"
        )
    lines.append(
        "| det | R101-C4 train / infer img/s, batch 8 | "
        f"{_fmt(d, 'r101_c4_b8', 'ours', 'train_images_per_s')}"
        f" / {_fmt(d, 'r101_c4_b8', 'ours', 'infer_images_per_s')} | | |"
    )
    k = r.get("cls", {})
    lines.append(
        f"| cls | ResNet-50 train img/s at 224, batch {k.get('batch_size', 256)} | "
        f"{_fmt(k, 'ours_images_per_s', spec='.0f')} | "
        f"{_fmt(k, 'torchvision_images_per_s', spec='.0f')} "
        f"| {_fmt(k, 'ratio')} |"
    )
    errors = [
        f"- {name}: {v['error']}" for name, v in r.items() if isinstance(v, dict) and "error" in v
    ]
    return "\n".join(lines + ([""] + errors if errors else [])) + "\n"


def main(argv: list[str] | None = None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--prepare", action="store_true", help="pack data and wheels here, print the GPU command"
    )
    p.add_argument("--out", default=os.environ.get("OUT", "gpu_suite_out"))
    p.add_argument(
        "--cifar",
        default=str(PACK / "cifar10_jpeg.tar.gz"),
        help="CIFAR-10 folder or its .tar(.gz) (--prepare writes the default)",
    )
    p.add_argument("--smoke", action="store_true", help="CPU, tiny sizes: checks the suite runs")
    p.add_argument("--parts", nargs="+", choices=sorted(PARTS), default=list(PARTS))
    p.add_argument(
        "--part", choices=sorted(PARTS), help=argparse.SUPPRESS
    )  # a child process's one part
    args = p.parse_args(argv)
    if args.prepare:
        prepare()
        return None
    if args.part:
        sys.path.insert(0, str(ROOT))
        work = Path(tempfile.mkdtemp(prefix=f"gpu_suite_{args.part}_"))
        try:
            figures = PARTS[args.part](args, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        (Path(args.out) / f"part_{args.part}.json").write_text(
            json.dumps(figures, indent=2, default=str)
        )
        return figures
    return run_parts(args)


if __name__ == "__main__":
    main()
