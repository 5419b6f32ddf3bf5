"""Dataset entries -> `DatasetSource`s (annotations only; no image is opened).

An entry is a registered name (`coco_2017_train`, `voc_2007_trainval`, ...) or a mapping with a
`format:`; both are read through the format table `resdet.data.formats` (which lists the names and
each format's keys). Relative paths resolve under the dataset root (`data.root`, else
`$RESDET_DATASETS`, else `datasets/`; `resdet.utils.paths.dataset_root`).
"""

from __future__ import annotations

from typing import Any

from resdet.data.errors import DatasetError
from resdet.data.formats import FORMATS, NAMES, ReadArgs, format_of
from resdet.data.records import DatasetSource
from resdet.utils.paths import dataset_root


def _keys(
    entry: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...], where: str
) -> None:
    missing = [k for k in required if k not in entry]
    unknown = [k for k in entry if k not in required + optional + ("format",)]
    if missing or unknown:
        problem = f"missing key {missing[0]!r}" if missing else f"unknown key {unknown[0]!r}"
        raise DatasetError(
            f"{where}: {problem} (a {entry['format']} entry takes {', '.join(required + optional)})"
        )


def _no_masks(where: str) -> DatasetError:
    return DatasetError(
        f"{where}: VOC-format datasets have boxes only, but a mask model "
        "(model.mask_head.enabled) trains on instance masks: use a COCO-format dataset with "
        "'segmentation', or model.mask_head.enabled=false"
    )


def load_source(
    entry: str | dict[str, Any],
    root: str | None = None,
    cache_dir: str | None = None,
    *,
    duplicate_iou: float | None = 0.9,
    folder_class_names: list[str] | None = None,
    masks: bool = False,
) -> DatasetSource:
    """Read one dataset entry (a registered name or a mapping) into a `DatasetSource`.

    `masks`: read instance masks too (a Mask R-CNN's training set); only COCO-format entries (and
    shapes) have them, so a VOC entry is then an error.
    `duplicate_iou` goes to the VOC and voc_folder readers (`data.duplicate_iou`);
    `folder_class_names` is the class list of a voc_folder entry that gives none (the training
    set's collected names, for its test entries), instead of collecting them from its XMLs.
    """
    if isinstance(entry, str):
        if entry not in NAMES:
            raise DatasetError(
                f"unknown dataset name {entry!r}; known: {', '.join(NAMES)}, "
                f"or a mapping with `format: {'|'.join(FORMATS)}`"
            )
        mapping, name, where = NAMES[entry], entry, repr(entry)
    elif isinstance(entry, dict):
        mapping, name, where = entry, None, f"dataset entry {entry!r}"
    else:
        raise DatasetError(f"a dataset entry must be a name or a mapping, got {entry!r}")
    fmt = format_of(mapping)
    if fmt is None:
        raise DatasetError(f"{where}: `format` must be one of {', '.join(FORMATS)}")
    if masks and not fmt.masks:
        raise _no_masks(where)
    _keys(mapping, fmt.required, fmt.optional, where)
    args = ReadArgs(
        root=dataset_root(root),
        where=where,
        name=name,
        masks=masks,
        duplicate_iou=duplicate_iou,
        folder_class_names=folder_class_names,
        cache_dir=cache_dir,
    )
    source = fmt.read(mapping, args)
    if source.protocol != fmt.protocol:
        raise RuntimeError(
            f"{where}: the {mapping['format']} reader returned a {source.protocol!r} source, but "
            f"resdet.data.formats.FORMATS says {fmt.protocol!r}"
        )
    return source
