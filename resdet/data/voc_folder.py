"""Flat labelled folders: a folder of images and one Pascal VOC XML per image, no ImageSets (what
labelImg writes and CVAT's "Pascal VOC" export holds) -> `DatasetSource`. Opens no image.

Matching, by file stem (only the top level of both folders is read):
- `ann_dir/<stem>.xml` annotates `image_dir/<stem>.<ext>`, `ext` one of `IMAGE_EXTENSIONS` in any
  case. Two images with the XML's stem (`a.jpg` and `a.png`) are an error.
- The XML's own stem wins over its `<filename>` field: labelImg keeps a stale `<filename>` after
  files are renamed. Only when no image has the XML's stem and `<filename>` names a file that exists
  in `image_dir` is that file used.
- An XML whose image is missing is an error; one `DatasetError` lists all of them (the first
  `LISTED`, then a count). An image without an XML is left out: such folders often hold images not
  yet labelled, or negatives for which labelImg writes no file. One `DatasetWarning` lists them
  (not with a `split_file`, which names the images it wants).

Class names: when given, an object of another class is an error naming the file, the object index
and the field. When not given, they are the sorted unique `<name>`s of every XML in `ann_dir`
(the whole folder, whatever part is selected, so every part of one folder has the same classes
in the same order; `DatasetSource.class_names_from_data` is then True).

Selection: every labelled image; or `split_file`, a text file of stems (one a line, blank lines
skipped), each of which must have an XML; or `FolderSplit(fraction, seed, part)`: the sorted
labelled stems shuffled by `numpy.random.default_rng(seed)`, the first `round(fraction * n)` are
part `train` and the rest part `test`, so two entries with the same fraction and seed get
disjoint, complementary parts.

Boxes are read as the VOC reader reads them (`resdet.data.voc.voc_record`): shifted by one pixel,
clipped, zero-area boxes and near-duplicates (`duplicate_iou`) dropped, one summary warning. Records
have the stem as `image_id` and the source has protocol `voc` (scored by the VOC evaluator, category
ids `1..C`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from resdet.data.checks import DropCounter
from resdet.data.compact import CompactRecords
from resdet.data.errors import DatasetError, DatasetWarning
from resdet.data.records import DatasetSource
from resdet.data.voc import VocAnnotation, parse_voc_xml, voc_record

#: image file extensions matched to an XML's stem (compared in lower case)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: how many file names an error or warning lists before it gives a count
LISTED = 20


@dataclass(frozen=True)
class FolderSplit:
    """A deterministic random split of a folder's sorted labelled stems: `fraction` of them
    (rounded) go to part `train`, the rest to part `test`."""

    fraction: float
    part: Literal["train", "test"]
    seed: int = 0

    @classmethod
    def from_mapping(cls, value: Any, where: str) -> FolderSplit:
        """Check a config mapping `{fraction, part[, seed]}`; errors name `where` and the key."""
        keys = ("fraction", "seed", "part")
        if not isinstance(value, dict):
            raise DatasetError(f"{where}: split must be a mapping {{fraction, seed, part}}")
        unknown = [k for k in value if k not in keys]
        missing = [k for k in ("fraction", "part") if k not in value]
        if unknown or missing:
            problem = f"unknown key {unknown[0]!r}" if unknown else f"missing key {missing[0]!r}"
            raise DatasetError(f"{where}: split: {problem} (split takes {', '.join(keys)})")
        fraction, part, seed = value["fraction"], value["part"], value.get("seed", 0)
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float))
            or not 0 < fraction < 1
        ):
            raise DatasetError(
                f"{where}: split.fraction must be a number in (0, 1), got {fraction!r}"
            )
        if part not in ("train", "test"):
            raise DatasetError(f"{where}: split.part must be 'train' or 'test', got {part!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise DatasetError(f"{where}: split.seed must be an integer, got {seed!r}")
        return cls(float(fraction), part, seed)

    def select(self, stems: list[str]) -> list[str]:
        """This part of `stems` (sorted first), in sorted order."""
        ordered = sorted(stems)
        order = np.random.default_rng(self.seed).permutation(len(ordered))
        n_train = round(self.fraction * len(ordered))
        chosen = order[:n_train] if self.part == "train" else order[n_train:]
        return [ordered[i] for i in sorted(chosen)]


def listing(names: list[str]) -> str:
    """`names` one per indented line, the first `LISTED`, then how many more."""
    lines = [f"\n  {n}" for n in names[:LISTED]]
    if len(names) > LISTED:
        lines.append(f"\n  ... and {len(names) - LISTED} more")
    return "".join(lines)


def _folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} not found (or not a folder)")
    return path


def _images_by_stem(image_dir: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for p in sorted(image_dir.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            found.setdefault(p.stem, []).append(p)
    return found


def _read_split_file(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{path}: split file not found")
    stems = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise DatasetError(f"{path}: stem {dup!r} listed twice")
    return stems


def _match(
    xmls: dict[str, VocAnnotation], images: dict[str, list[Path]], image_dir: Path, ann_dir: Path
) -> dict[str, Path]:
    """`{stem: image}` for every XML (the rules of the module docstring), or a `DatasetError`."""
    matched: dict[str, Path] = {}
    missing = []
    for stem, ann in xmls.items():
        candidates = images.get(stem, [])
        if len(candidates) > 1:
            names = ", ".join(p.name for p in candidates)
            raise DatasetError(
                f"{ann.path}: several images have its stem ({names}); keep one or rename the others"
            )
        if candidates:
            matched[stem] = candidates[0]
        elif ann.filename and Path(ann.filename).name == ann.filename:  # a name in image_dir
            by_field = image_dir / ann.filename
            if by_field.is_file():
                matched[stem] = by_field
            else:
                missing.append(ann.path.name)
        else:
            missing.append(ann.path.name)
    if missing:
        raise DatasetError(
            f"{ann_dir}: {len(missing)} annotation file(s) without an image in {image_dir} "
            f"(matched by file stem, extensions {', '.join(IMAGE_EXTENSIONS)}; else by <filename>):"
            + listing(missing)
        )
    owners: dict[Path, str] = {}
    for stem, image in matched.items():
        if image in owners:
            raise DatasetError(
                f"{ann_dir}: {owners[image]}.xml and {stem}.xml both annotate {image}"
            )
        owners[image] = stem
    return matched


def load_voc_folder(
    image_dir: str | Path,
    ann_dir: str | Path,
    class_names: list[str] | None = None,
    *,
    split_file: str | Path | None = None,
    split: FolderSplit | None = None,
    duplicate_iou: float | None = 0.9,
    name: str | None = None,
) -> DatasetSource:
    """Read the labelled images of a flat folder (see the module docstring). `split_file` and
    `split` are exclusive; without either, every labelled image is read."""
    if split_file is not None and split is not None:
        raise DatasetError("a voc_folder entry takes split_file or split, not both")
    image_dir = _folder(Path(image_dir), "image folder (image_dir)")
    ann_dir = _folder(Path(ann_dir), "annotation folder (ann_dir)")
    xml_files = sorted(p for p in ann_dir.iterdir() if p.is_file() and p.suffix.lower() == ".xml")
    xmls = {p.stem: parse_voc_xml(p) for p in xml_files}
    images = _images_by_stem(image_dir)
    matched = _match(xmls, images, image_dir, ann_dir)

    if split_file is not None:
        stems = _read_split_file(Path(split_file))
        unlabelled = [s for s in stems if s not in xmls]
        if unlabelled:
            raise DatasetError(
                f"{split_file}: {len(unlabelled)} stem(s) without an annotation file in "
                f"{ann_dir}:" + listing(unlabelled)
            )
        part = Path(split_file).name
    else:
        stems = split.select(list(xmls)) if split is not None else sorted(xmls)
        part = split.part if split is not None else "all"
        used = set(matched.values())
        left_out = [p.name for ps in images.values() for p in ps if p not in used]
        if left_out:
            warnings.warn(
                f"{image_dir}: {len(left_out)} image(s) without an annotation file in {ann_dir} "
                "are left out:" + listing(left_out),
                DatasetWarning,
                stacklevel=2,
            )

    from_data = class_names is None
    if class_names is None:
        class_names = sorted({o.name for ann in xmls.values() for o in ann.objects})
    if len(set(class_names)) != len(class_names):
        raise DatasetError(f"{ann_dir}: class_names lists a class twice: {class_names}")
    label_of = {c: k for k, c in enumerate(class_names)}
    dropped = DropCounter()
    records = [
        voc_record(
            xmls[stem],
            label_of,
            file_name=str(matched[stem]),
            image_id=stem,
            dropped=dropped,
            duplicate_iou=duplicate_iou,
        )
        for stem in stems
    ]
    dropped.warn(f"{ann_dir.name} ({part})")
    return DatasetSource(
        name=name or f"{ann_dir}:{part}",
        protocol="voc",
        class_names=list(class_names),
        category_ids=list(range(1, len(class_names) + 1)),
        records=CompactRecords.from_records(records, masks=False),
        class_names_from_data=from_data,
    )
