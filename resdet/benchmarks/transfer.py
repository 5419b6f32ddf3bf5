"""The transfer benchmark: one detector per backbone weight source, fine-tuned under a fixed
detection protocol (`configs/transfer/<name>.yaml`) and evaluated; one table out.

    rows = run_transfer("bccd_r18_fpn", ["random", "resdet:shapes_r18"], seeds=[0, 1],
                        root=Path("output/transfer/bccd_r18_fpn"))
    print(transfer_table(rows))

A protocol fixes everything except `model.backbone.weights`. A weight source is anything
`model.backbone.weights` takes (a path, `torchvision:<name>`, `timm:<name>`, `resdet:<name>`) or
`random`: no weights, and, because frozen random statistics normalise nothing, a protocol with
`FrozenBN` trains `BN` instead and freezes nothing (`RANDOM_INIT`; the table says so). Each source
and seed is one run in `<root>/<source>_seed<k>/` (`resdet.runs.trained`): finished runs are read
back, so a killed benchmark continues where it stopped. A source that fails (unreadable file, wrong
architecture) becomes a row with its error, and the other sources still run.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from backbones.spec import CAFFE_PIXELS, TORCHVISION_PIXELS, PixelFormat
from backbones.weights.files import read_source
from resdet.build import pixel_format_of
from resdet.config import CONFIG_DIR, Config, ConfigError, load_config
from resdet.evaluation.base import headline_metric
from resdet.io.named_weights import cached_path, is_named
from resdet.runs.detection import check_weights_present, missing_datasets
from resdet.runs.trained import train_or_reuse
from resdet.utils.atomic import atomic_write_text
from resdet.utils.figures import pyplot, save_figure

PROTOCOL_DIR = CONFIG_DIR / "transfer"
RANDOM = "random"
#: what `random` changes in a protocol whose backbone norms are frozen
RANDOM_INIT = ["model.backbone.norm=BN", "model.backbone.freeze_at=0"]
#: headline metric columns: the summary metric each shows, by COCO's name (the evaluator's own name
#: is `resdet.evaluation.base.headline_metric`'s); the VOC07 11-point AP50 is the number MoCo's and
#: detectron2's VOC07-test tables give as AP50
COLUMNS = {"AP50": "AP50", "AP50 (VOC07)": "AP50_voc07", "AP": "AP", "AP75": "AP75"}


@dataclass
class TransferRow:
    """One source and seed: flat metrics of the final evaluation (empty on failure), minutes, the
    error that stopped it (None when it finished), and what the protocol's run changed for it."""

    source: str
    seed: int
    metrics: dict[str, float]
    minutes: float
    error: str | None = None
    changed: tuple[str, ...] = ()


def protocol_path(name: str) -> Path:
    """`configs/transfer/<name>.yaml`; an unknown name is a `ConfigError` listing the known ones."""
    path = PROTOCOL_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROTOCOL_DIR.glob("*.yaml")))
        raise ConfigError(f"unknown transfer protocol {name!r}; known: {known} ({PROTOCOL_DIR})")
    return path


def source_overrides(cfg: Config, source: str) -> list[str]:
    """The config overrides that make `cfg`'s protocol start from `source`: the weights, and the
    input format they were trained with when it is not the protocol's (a caffe-format MSRA `.pkl`
    under a torchvision-format protocol: `model.pixel_format` and `stride_in_1x1` follow it)."""
    if source == RANDOM:
        frozen = cfg.model.backbone.norm == "FrozenBN"
        return ["model.backbone.weights=null", *(RANDOM_INIT if frozen else [])]
    out = [f"model.backbone.weights={source}"]
    pixels = _recorded_pixels(source)
    if pixels is not None and pixels != pixel_format_of(cfg.model):
        for name, fmt in (("caffe", CAFFE_PIXELS), ("torchvision", TORCHVISION_PIXELS)):
            if pixels == fmt:
                out += [
                    f"model.pixel_format={name}",
                    f"model.backbone.stride_in_1x1={str(name == 'caffe').lower()}",
                ]
    return out


def _recorded_pixels(source: str) -> PixelFormat | None:
    """The input format `source`'s file records, when it can be read without downloading or
    producing anything (None otherwise: the run's own check then speaks)."""
    if source.startswith("torchvision:"):
        return TORCHVISION_PIXELS
    if source.startswith("timm:"):
        return None
    try:
        path = cached_path(source) if is_named(source) else Path(source)
        return read_source(str(path))[2] if path.is_file() else None
    except (OSError, ValueError):
        return None  # unknown or unreadable: the run fails and its row says why


def run_dir_name(source: str, seed: int) -> str:
    """A folder name for `source` and `seed`: the source with anything but letters, digits, `.`,
    `-` and `_` replaced by `_` (`resdet:shapes_r18` -> `resdet_shapes_r18_seed0`)."""
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', source).strip('_')}_seed{seed}"


def missing_inputs(protocol: str, sources: list[str], overrides: list[str]) -> list[str]:
    """Every dataset and weight file the benchmark needs and does not find, one line each saying
    where it goes; empty when all are there. Nothing is downloaded or trained."""
    cfg = load_config(protocol_path(protocol), overrides)
    problems = missing_datasets(cfg)
    for source in sources:
        if source == RANDOM:
            continue
        problems.extend(_weights_problem(cfg, source))
    return problems


def _weights_problem(cfg: Config, source: str) -> list[str]:
    from backbones.weights.files import torchvision_location

    if source.startswith("torchvision:"):
        try:
            url, path = torchvision_location(source)
        except ValueError as e:
            return [f"--weights {source}: {e}"]
        if not path.is_file():
            return [f"--weights {source}: not downloaded; fetch {url} and place it at {path}"]
        return []
    if source.startswith("timm:"):
        return []  # the Hugging Face cache is timm's to check; a failure becomes the row's error
    backbone = replace(cfg.model.backbone, weights=source)
    try:
        check_weights_present(replace(cfg, model=replace(cfg.model, backbone=backbone)))
    except ConfigError as e:
        return [f"--weights {source}: {str(e).split(': ', 1)[-1]}"]
    return []


def run_transfer(
    protocol: str,
    sources: list[str],
    *,
    seeds: list[int],
    root: Path,
    overrides: list[str] = (),
    progress: bool = True,
) -> list[TransferRow]:
    """Fine-tune and evaluate the protocol once per source and seed (see the module docstring)."""
    config = str(protocol_path(protocol))
    base = load_config(config, list(overrides))
    rows = []
    for source in sources:
        changed = tuple(source_overrides(base, source))
        for seed in seeds:
            label = f"{source} seed {seed}"
            try:
                run = train_or_reuse(
                    config,
                    [*overrides, *changed],
                    root / run_dir_name(source, seed),
                    label=source,
                    seed=seed,
                    progress=progress,
                )
            except (ValueError, RuntimeError, OSError) as e:  # ConfigError, DatasetError too
                print(f"[transfer] {label} failed: {e}", flush=True)
                rows.append(TransferRow(source, seed, {}, 0.0, str(e).splitlines()[0], changed))
                continue
            rows.append(TransferRow(source, seed, run.metrics, run.seconds / 60, None, changed))
    return rows


def _value(metrics: dict[str, float], column: str) -> float | None:
    """`column`'s number in one run's metrics: a headline column under the evaluator's name of
    its metric, a per-class column as it is; None when the run has none."""
    return metrics.get(headline_metric(metrics, COLUMNS[column]) if column in COLUMNS else column)


def _per_class(rows: list[TransferRow]) -> list[str]:
    first = next((r.metrics for r in rows if r.metrics), {})
    return [k.split("/", 1)[1] for k in first if k.startswith("AP50/")]


def summary(rows: list[TransferRow]) -> list[dict[str, Any]]:
    """Per source: the mean and spread (max - min over seeds) of AP50, AP, AP75 and per-class AP50
    (fractions), mean minutes, the seeds that finished, and the first error if any failed."""
    out = []
    for source in dict.fromkeys(r.source for r in rows):
        mine = [r for r in rows if r.source == source]
        done = [r for r in mine if r.error is None]
        entry: dict[str, Any] = {
            "source": source,
            "seeds": [r.seed for r in done],
            "error": next((r.error for r in mine if r.error), None),
            "changed": list(mine[0].changed),
        }
        for col in [*COLUMNS, *(f"AP50/{k}" for k in _per_class(rows))]:
            vals = [v for r in done if (v := _value(r.metrics, col)) is not None]
            entry[col] = statistics.fmean(vals) if vals else None
            entry[f"{col} spread"] = max(vals) - min(vals) if len(vals) > 1 else None
        entry["minutes"] = statistics.fmean(r.minutes for r in done) if done else None
        out.append(entry)
    return out


def transfer_table(rows: list[TransferRow], *, max_classes: int = 6) -> str:
    """Markdown: one line per source, `mean ± spread` in percent over the seeds that finished;
    per-class AP50 columns when there are at most `max_classes` classes; a column no source has
    (AP50 (VOC07) on COCO) is left out; failed sources show their error."""
    entries = summary(rows)
    classes = _per_class(rows)
    shown = [f"AP50/{c}" for c in classes] if len(classes) <= max_classes else []
    cols = [c for c in [*COLUMNS, *shown] if any(e[c] is not None for e in entries)]
    header = ["source", "seeds", *cols, "minutes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in entries:
        if not e["seeds"]:
            lines.append(f"| {e['source']} | - | failed: {e['error']} |")
            continue
        cells = [e["source"], ",".join(map(str, e["seeds"]))]
        for c in cols:
            v, s = e[c], e[f"{c} spread"]
            cells.append(
                "-" if v is None else f"{100 * v:.1f}" + ("" if s is None else f" ± {100 * s:.1f}")
            )
        cells.append(f"{e['minutes']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_outputs(
    rows: list[TransferRow], root: Path, protocol: str, overrides: list[str]
) -> dict[str, Path]:
    """`<root>/transfer.json` (every row, the summary and the protocol overrides), `transfer.md`
    (the table, plus the per-class table when it was collapsed), `transfer.png` (AP50 per source,
    bars with the seed spread). Returns the three paths."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {k: root / f"transfer.{k}" for k in ("json", "md", "png")}
    entries = summary(rows)
    atomic_write_text(
        paths["json"],
        json.dumps(
            {
                "protocol": protocol,
                "overrides": overrides,
                "rows": [asdict(r) for r in rows],
                "summary": entries,
            },
            indent=2,
        ),
    )
    changed = f"protocol overrides: {' '.join(overrides)}\n\n" if overrides else ""
    text = f"# Transfer: protocol {protocol}\n\n{changed}{transfer_table(rows)}\n"
    if len(_per_class(rows)) > 6:
        text += "\n## AP50 per class\n\n" + transfer_table(rows, max_classes=10**6) + "\n"
    atomic_write_text(paths["md"], text)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(entries), 3.5))
    names = [e["source"] for e in entries]
    ap50 = [100 * e["AP50"] if e["AP50"] is not None else 0.0 for e in entries]
    spread = [100 * (e["AP50 spread"] or 0.0) for e in entries]
    ax.bar(range(len(names)), ap50, yerr=spread, capsize=4, color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel("AP50 (%)")
    ax.set_title(f"transfer: {protocol}")
    ax.set_ylim(0, max([*ap50, 1.0]) * 1.15)
    save_figure(fig, paths["png"], dpi=120)
    return paths
