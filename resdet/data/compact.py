"""`CompactRecords`: a dataset's `ImageRecord`s in a few flat numpy arrays.

A list of `ImageRecord`s holds about 390 Python objects per COCO image with masks (every polygon
coordinate a float in a list). Each DataLoader worker forked from the process that holds them copies
every page it touches, because reading a Python object writes its reference count (and the cyclic
garbage collector walks them all): the workers' private memory grows towards the size of the
records. Here the records are one sequence object over flat arrays (no per-image object), so forked
workers share the pages: `records[i]` builds that image's `ImageRecord` on access.

Layout (`n` images, `B` boxes, `C` crowd boxes, `P` polygon parts), every array read-only:
- `file_bytes` / `file_offsets` (n+1): the file names, UTF-8, one after the other;
- `ids` (n,) int64, or `id_bytes` / `id_offsets` (n+1) for text ids (VOC stems; `id_kind`);
- `heights`, `widths` (n,) int32;
- `box_offsets` (n+1) into `boxes` (B, 4) float32, `labels` (B,) int64, `difficult` (B,) bool;
- `crowd_offsets` (n+1) into `crowd_boxes` (C, 4) float32;
- with masks, one segmentation per box: `seg_kind` (B,) uint8 (`POLYGONS`, `RLE_TEXT`,
  `RLE_RUNS`), `seg_start`, `seg_count` (B,): its parts (polygons), its bytes in `rle_bytes`
  (compressed RLE) or its runs in `rle_runs` (uncompressed RLE);
- polygon part `j`: `part_len[j]` coordinates from `part_start[j]`, in `coords_i32` as integers
  scaled by `10 ** part_code[j]` when that reproduces every float64 coordinate exactly (COCO
  polygons have at most 2 decimals: 4 bytes a coordinate), else (`part_code` 255) in
  `coords_f64`. A rebuilt polygon is a float64 array equal, bit for bit, to the float64 values the
  JSON parser produced, so pycocotools rasterises the same masks.

`RecordsView` is the same sequence over several stores, in a chosen order (a dataset's sources
after filtering) without copying them. `resdet.data.records_cache` writes a store to one file and
maps it back (`CompactRecords.from_arrays`), so 8 ranks of a node share one copy in the page cache.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, overload

import numpy as np

from resdet.data.records import ImageRecord

POLYGONS, RLE_TEXT, RLE_RUNS = 0, 1, 2
#: `part_code` of a polygon part kept as float64 (no decimal scaling reproduces it exactly)
FLOAT64 = 255
#: decimal scalings tried for polygon parts, fewest digits first
_DIGITS = range(0, 7)
#: 10.0 ** d for each d of `_DIGITS` (float64, exact)
_SCALES = np.array([10.0**d for d in _DIGITS])

IdKind = Literal["int", "str"]
#: the arrays every store has
BASE_ARRAYS = (
    "file_bytes",
    "file_offsets",
    "heights",
    "widths",
    "box_offsets",
    "boxes",
    "labels",
    "difficult",
    "crowd_offsets",
    "crowd_boxes",
)
ID_ARRAYS = {"int": ("ids",), "str": ("id_bytes", "id_offsets")}
MASK_ARRAYS = (
    "seg_kind",
    "seg_start",
    "seg_count",
    "part_code",
    "part_start",
    "part_len",
    "coords_i32",
    "coords_f64",
    "rle_bytes",
    "rle_runs",
)


class CompactRecordsError(ValueError):
    """Arrays that do not form a consistent store (a damaged cache file)."""


def _text(buf: np.ndarray, offsets: np.ndarray, i: int) -> str:
    return buf[int(offsets[i]) : int(offsets[i + 1])].tobytes().decode("utf-8")


def _pack_text(texts: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [t.encode("utf-8") for t in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def _encode_coords(
    coords: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """float64 coordinates of parts of `lengths` -> (part_code, part_start, coords_i32,
    coords_f64): each part as int32 scaled by the fewest decimal digits that give back every
    coordinate exactly (`k / 10**d == x` in float64), else as float64."""
    parts = len(lengths)
    code = np.full(parts, FLOAT64, dtype=np.uint8)
    starts = np.zeros(parts, dtype=np.int64)
    ends = np.cumsum(lengths)
    undecided = np.ones(parts, dtype=bool)
    with np.errstate(invalid="ignore", over="ignore"):
        for d in _DIGITS:
            k = np.rint(coords * _SCALES[d])
            bad = ~((np.abs(k) < 2**31) & (k / _SCALES[d] == coords))
            # a part fits d when none of its coordinates is bad
            bad_before = np.concatenate([[0], np.cumsum(bad)])
            fits = (bad_before[ends] == bad_before[ends - lengths]) & undecided
            code[fits] = d
            undecided &= ~fits
            if not undecided.any():
                break
    scaled = code != FLOAT64
    per_coord = np.repeat(scaled, lengths)
    scale = np.repeat(_SCALES[np.where(scaled, code, 0)], lengths)[per_coord]
    coords_i32 = np.rint(coords[per_coord] * scale)
    coords_f64 = coords[~per_coord].copy()
    for mask in (scaled, ~scaled):
        lens = lengths[mask]
        s = np.zeros(len(lens), dtype=np.int64)
        np.cumsum(lens[:-1], out=s[1:])
        starts[mask] = s
    return code, starts, coords_i32.astype(np.int32), coords_f64


class RecordsBuilder:
    """Collects images one at a time (`add`) into the flat buffers of a `CompactRecords`
    (`build`). Nothing per image or per box stays a Python object: boxes, labels and coordinates
    go into `array`s as they come."""

    def __init__(self, *, masks: bool) -> None:
        self.masks = masks
        self.file_names: list[str] = []
        self.ids: list[int | str] = []
        self.heights = array("i")
        self.widths = array("i")
        self.box_counts = array("q")
        self.crowd_counts = array("q")
        self.boxes = array("d")
        self.labels = array("q")
        self.difficult = array("b")
        self.crowd = array("d")
        self.seg_kind = array("B")
        self.seg_count = array("q")
        self.part_len = array("q")
        self.coords = array("d")
        self.rle_len = array("q")  # per RLE segmentation, in its own buffer
        self.rle_bytes = bytearray()
        self.rle_runs = array("q")

    def add(
        self,
        file_name: str,
        image_id: int | str,
        height: int,
        width: int,
        boxes: Iterable[Sequence[float]] | np.ndarray,
        labels: Iterable[int] | np.ndarray,
        difficult: Iterable[bool] | np.ndarray | None = None,
        crowd_boxes: Iterable[Sequence[float]] | np.ndarray = (),
        segmentations: Sequence[Any] | None = None,
    ) -> None:
        """One image: boxes xyxy (values as float64; stored float32, as `np.asarray(...,
        float32)` rounds them), one segmentation per box when building with masks."""
        self.file_names.append(file_name)
        self.ids.append(image_id)
        self.heights.append(height)
        self.widths.append(width)
        n0 = len(self.labels)
        for b in boxes:
            self.boxes.extend(map(float, b))
        self.labels.extend(map(int, labels))
        n = len(self.labels) - n0
        if len(self.boxes) != 4 * len(self.labels):
            raise ValueError(f"{file_name}: boxes and labels differ in number")
        self.box_counts.append(n)
        if difficult is None:
            self.difficult.extend(bytes(n))
        else:
            self.difficult.extend(map(bool, difficult))
        if len(self.difficult) != len(self.labels):
            raise ValueError(f"{file_name}: difficult flags and boxes differ in number")
        c0 = len(self.crowd)
        for b in crowd_boxes:
            self.crowd.extend(map(float, b))
        self.crowd_counts.append((len(self.crowd) - c0) // 4)
        if not self.masks:
            return
        if segmentations is None or len(segmentations) != n:
            raise ValueError(f"{file_name}: needs one segmentation per box")
        for seg in segmentations:
            self._add_segmentation(seg)

    def _add_segmentation(self, seg: Any) -> None:
        if isinstance(seg, dict):
            counts = seg["counts"]
            if isinstance(counts, (str, bytes)):
                raw = counts.encode("ascii") if isinstance(counts, str) else counts
                self.seg_kind.append(RLE_TEXT)
                self.rle_bytes += raw
                self.rle_len.append(len(raw))
            else:
                self.seg_kind.append(RLE_RUNS)
                before = len(self.rle_runs)
                self.rle_runs.extend(map(int, counts))
                self.rle_len.append(len(self.rle_runs) - before)
            self.seg_count.append(self.rle_len[-1])
            return
        self.seg_kind.append(POLYGONS)
        self.seg_count.append(len(seg))
        for part in seg:
            before = len(self.coords)
            if isinstance(part, np.ndarray):
                self.coords.frombytes(np.ascontiguousarray(part, dtype=np.float64).tobytes())
            else:
                self.coords.extend(part)
            self.part_len.append(len(self.coords) - before)

    def build(self) -> CompactRecords:
        """The store of everything added."""
        a: dict[str, np.ndarray] = {}
        a["file_bytes"], a["file_offsets"] = _pack_text(self.file_names)
        id_kind: IdKind = "int"
        if all(isinstance(i, int) and not isinstance(i, bool) for i in self.ids) and all(
            -(2**63) <= i < 2**63 for i in self.ids
        ):
            a["ids"] = np.asarray(self.ids, dtype=np.int64).reshape(-1)
        elif all(isinstance(i, str) for i in self.ids):
            id_kind = "str"
            a["id_bytes"], a["id_offsets"] = _pack_text(self.ids)  # type: ignore[arg-type]
        else:
            raise ValueError("image ids must be all integers (int64) or all strings")
        a["heights"] = np.frombuffer(self.heights, dtype=np.int32).copy()
        a["widths"] = np.frombuffer(self.widths, dtype=np.int32).copy()
        a["box_offsets"] = _offsets(self.box_counts)
        a["boxes"] = np.frombuffer(self.boxes, dtype=np.float64).astype(np.float32).reshape(-1, 4)
        a["labels"] = np.frombuffer(self.labels, dtype=np.int64).copy()
        a["difficult"] = np.frombuffer(self.difficult, dtype=np.int8).astype(bool)
        a["crowd_offsets"] = _offsets(self.crowd_counts)
        a["crowd_boxes"] = (
            np.frombuffer(self.crowd, dtype=np.float64).astype(np.float32).reshape(-1, 4)
        )
        if self.masks:
            kind = np.frombuffer(self.seg_kind, dtype=np.uint8).copy()
            count = np.frombuffer(self.seg_count, dtype=np.int64).copy()
            start = np.zeros(len(kind), dtype=np.int64)
            for k in (POLYGONS, RLE_TEXT, RLE_RUNS):
                sel = kind == k
                c = count[sel]
                s = np.zeros(len(c), dtype=np.int64)
                np.cumsum(c[:-1], out=s[1:])
                start[sel] = s
            part_len = np.frombuffer(self.part_len, dtype=np.int64)
            code, pstart, i32, f64 = _encode_coords(
                np.frombuffer(self.coords, dtype=np.float64), part_len
            )
            a.update(
                seg_kind=kind,
                seg_start=start,
                seg_count=count,
                part_code=code,
                part_start=pstart,
                part_len=part_len.astype(np.int32),
                coords_i32=i32,
                coords_f64=f64,
                rle_bytes=np.frombuffer(bytes(self.rle_bytes), dtype=np.uint8),
                rle_runs=np.frombuffer(self.rle_runs, dtype=np.int64).copy(),
            )
        return CompactRecords(a, id_kind=id_kind, masks=self.masks)


def _offsets(counts: array) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(np.frombuffer(counts, dtype=np.int64), out=out[1:])
    return out


class _RecordSequence(Sequence[ImageRecord]):
    """The sequence both record containers are: `len`, `[i]` (negative too) and slices build
    `ImageRecord`s through `_record(i)`, iteration in order."""

    def _record(self, i: int) -> ImageRecord:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> ImageRecord: ...

    @overload
    def __getitem__(self, index: slice) -> list[ImageRecord]: ...

    def __getitem__(self, index: int | slice) -> ImageRecord | list[ImageRecord]:
        n = len(self)
        if isinstance(index, slice):
            return [self._record(i) for i in range(*index.indices(n))]
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"record index {index} out of range for {n} records")
        return self._record(i)

    def __iter__(self) -> Iterator[ImageRecord]:
        return (self._record(i) for i in range(len(self)))


class CompactRecords(_RecordSequence):
    """A dataset's records in flat arrays (module docstring): `len`, `records[i]` (an
    `ImageRecord` built on access, with its own copies of the arrays), slices (a list), iteration.
    Column arrays (`heights`, `widths`, `box_counts`, ...) serve whole-dataset questions without
    building a record per image."""

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        *,
        id_kind: IdKind,
        masks: bool,
        validate: bool = False,
        origin: str | None = None,
    ) -> None:
        wanted = BASE_ARRAYS + ID_ARRAYS[id_kind] + (MASK_ARRAYS if masks else ())
        missing = [k for k in wanted if k not in arrays]
        if missing:
            raise CompactRecordsError(f"missing arrays: {', '.join(missing)}")
        self.arrays = {k: arrays[k] for k in wanted}
        for v in self.arrays.values():
            if v.flags.writeable:
                v.flags.writeable = False
        self.id_kind, self.masks = id_kind, masks
        #: the cache file the arrays are mapped from (pickles as its path), else None
        self.origin = origin
        for k, v in self.arrays.items():
            setattr(self, k, v)
        self._n = len(self.arrays["heights"])
        if validate:
            self.validate()

    # -- sequence -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._n

    def _record(self, i: int) -> ImageRecord:
        return self.record(i)

    def __repr__(self) -> str:
        where = f", mapped from {self.origin}" if self.origin else ""
        return (
            f"CompactRecords({self._n} images, {len(self.labels)} boxes, "
            f"masks={self.masks}, {self.nbytes / 2**20:.1f} MiB{where})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # a mapped store pickles as its file (spawned DataLoader workers map it again)
        if self.origin is not None:
            from resdet.data.records_cache import map_records

            return (map_records, (self.origin,))
        return (_rebuild, (dict(self.arrays), self.id_kind, self.masks))

    # -- columns --------------------------------------------------------------------------------

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.arrays.values())

    @property
    def box_counts(self) -> np.ndarray:
        return np.diff(self.box_offsets)

    @property
    def crowd_counts(self) -> np.ndarray:
        return np.diff(self.crowd_offsets)

    def file_name(self, i: int) -> str:
        return _text(self.file_bytes, self.file_offsets, i)

    def image_id(self, i: int) -> int | str:
        if self.id_kind == "int":
            return int(self.ids[i])
        return _text(self.id_bytes, self.id_offsets, i)

    def kept_counts(self, keep: np.ndarray) -> np.ndarray:
        """Per image, how many of its boxes `keep` (a (B,) bool array over all boxes) selects."""
        c = np.zeros(len(keep) + 1, dtype=np.int64)
        np.cumsum(keep, out=c[1:])
        return c[self.box_offsets[1:]] - c[self.box_offsets[:-1]]

    # -- records --------------------------------------------------------------------------------

    def record(self, i: int) -> ImageRecord:
        """Image `i` (0 <= i < len) as an `ImageRecord`."""
        a, b = int(self.box_offsets[i]), int(self.box_offsets[i + 1])
        c, d = int(self.crowd_offsets[i]), int(self.crowd_offsets[i + 1])
        height, width = int(self.heights[i]), int(self.widths[i])
        return ImageRecord(
            file_name=self.file_name(i),
            image_id=self.image_id(i),
            height=height,
            width=width,
            boxes=self.boxes[a:b].copy(),
            labels=self.labels[a:b].copy(),
            difficult=self.difficult[a:b].copy(),
            crowd_boxes=self.crowd_boxes[c:d].copy(),
            segmentations=(
                [self.segmentation(k, height, width) for k in range(a, b)] if self.masks else None
            ),
        )

    def segmentation(self, k: int, height: int, width: int) -> Any:
        """Box `k`'s segmentation as the reader checked it: polygons as a list of float64 arrays
        (one per part), RLE as `{"size": [height, width], "counts": str | list[int]}`."""
        kind, s, n = int(self.seg_kind[k]), int(self.seg_start[k]), int(self.seg_count[k])
        if kind == RLE_TEXT:
            return {"size": [height, width], "counts": self.rle_bytes[s : s + n].tobytes().decode()}
        if kind == RLE_RUNS:
            return {"size": [height, width], "counts": self.rle_runs[s : s + n].tolist()}
        parts = []
        for j in range(s, s + n):
            code, ps, pn = int(self.part_code[j]), int(self.part_start[j]), int(self.part_len[j])
            if code == FLOAT64:
                parts.append(self.coords_f64[ps : ps + pn].copy())
            else:
                parts.append(self.coords_i32[ps : ps + pn] / _SCALES[code])
        return parts

    # -- checks ---------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise `CompactRecordsError` unless the arrays form a consistent store: shapes and
        dtypes, offsets that start at 0, never decrease and end at their buffer's length, and
        segment ranges inside their buffers. Vectorised: milliseconds for COCO train."""
        n = self._n
        a = self.arrays

        def need(ok: bool, what: str) -> None:
            if not ok:
                raise CompactRecordsError(what)

        def offsets(name: str, length: int, buffer_len: int) -> None:
            off = a[name]
            need(off.dtype == np.int64 and off.shape == (length + 1,), f"{name}: bad shape")
            need(
                off[0] == 0 and off[-1] == buffer_len and bool((np.diff(off) >= 0).all()),
                f"{name}: not offsets into a buffer of {buffer_len}",
            )

        def ranges(start: np.ndarray, count: np.ndarray, buffer_len: int, what: str) -> None:
            need(
                bool((start >= 0).all() and (count >= 0).all())
                and bool((start + count <= buffer_len).all()),
                f"{what}: ranges outside their buffer",
            )

        need(a["widths"].shape == (n,) and a["heights"].dtype == np.int32, "heights/widths")
        need(bool((a["heights"] > 0).all() and (a["widths"] > 0).all()), "sizes must be > 0")
        offsets("file_offsets", n, len(a["file_bytes"]))
        if self.id_kind == "int":
            need(a["ids"].shape == (n,) and a["ids"].dtype == np.int64, "ids")
        else:
            offsets("id_offsets", n, len(a["id_bytes"]))
        boxes = len(a["labels"])
        need(a["boxes"].shape == (boxes, 4) and a["boxes"].dtype == np.float32, "boxes")
        need(a["labels"].dtype == np.int64 and a["difficult"].shape == (boxes,), "labels")
        offsets("box_offsets", n, boxes)
        need(a["crowd_boxes"].ndim == 2 and a["crowd_boxes"].shape[1] == 4, "crowd_boxes")
        offsets("crowd_offsets", n, len(a["crowd_boxes"]))
        if not self.masks:
            return
        kind, start, count = a["seg_kind"], a["seg_start"], a["seg_count"]
        need(kind.shape == start.shape == count.shape == (boxes,), "one segmentation per box")
        need(bool((kind <= RLE_RUNS).all()), "seg_kind")
        parts = len(a["part_code"])
        need(a["part_start"].shape == a["part_len"].shape == (parts,), "parts")
        for k, size in ((POLYGONS, parts), (RLE_TEXT, len(a["rle_bytes"]))):
            sel = kind == k
            ranges(start[sel], count[sel], size, "segmentations")
        sel = kind == RLE_RUNS
        ranges(start[sel], count[sel], len(a["rle_runs"]), "segmentations")
        code = a["part_code"]
        scaled = code != FLOAT64
        need(bool((code[scaled] < len(_DIGITS)).all()), "part_code")
        pstart, plen = a["part_start"], a["part_len"].astype(np.int64)
        ranges(pstart[scaled], plen[scaled], len(a["coords_i32"]), "coords_i32")
        ranges(pstart[~scaled], plen[~scaled], len(a["coords_f64"]), "coords_f64")

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_records(
        cls, records: Iterable[ImageRecord], *, masks: bool | None = None
    ) -> CompactRecords:
        """Pack `ImageRecord`s (e.g. a list a reader made). `masks` (keep the segmentations)
        defaults to whether every record carries them."""
        records = list(records) if not isinstance(records, Sequence) else records
        if masks is None:
            masks = bool(records) and all(r.segmentations is not None for r in records)
        builder = RecordsBuilder(masks=masks)
        for r in records:
            if masks and r.segmentations is None:
                raise ValueError(f"{r.file_name}: record without segmentations among masked ones")
            builder.add(
                r.file_name,
                r.image_id,
                r.height,
                r.width,
                np.asarray(r.boxes, dtype=np.float32).astype(np.float64).reshape(-1, 4),
                r.labels,
                r.difficult,
                np.asarray(r.crowd_boxes, dtype=np.float32).astype(np.float64).reshape(-1, 4),
                r.segmentations if masks else None,
            )
        return builder.build()

    def to_list(self, *, python_floats: bool = False) -> list[ImageRecord]:
        """Every record as its own `ImageRecord`. `python_floats`: polygons as
        lists of Python floats, the layout records had before this module (the data benchmark's
        "before" row)."""
        out = []
        for r in self:
            segs = r.segmentations
            if segs is not None and python_floats:
                segs = [s if isinstance(s, dict) else [p.tolist() for p in s] for s in segs]
            out.append(
                ImageRecord(
                    file_name=r.file_name,
                    image_id=r.image_id,
                    height=r.height,
                    width=r.width,
                    boxes=r.boxes,
                    labels=r.labels,
                    difficult=r.difficult,
                    crowd_boxes=r.crowd_boxes,
                    segmentations=segs,
                )
            )
        return out


def _rebuild(arrays: dict[str, np.ndarray], id_kind: IdKind, masks: bool) -> CompactRecords:
    return CompactRecords(arrays, id_kind=id_kind, masks=masks)


def as_compact(records: Sequence[ImageRecord]) -> CompactRecords:
    """`records` as a `CompactRecords` (itself when it is one)."""
    if isinstance(records, CompactRecords):
        return records
    return CompactRecords.from_records(records)


class RecordsView(_RecordSequence):
    """Records `order[i]` of the concatenation of `stores` (a dataset's sources, filtered),
    without copying the stores: two int arrays, whatever the number of images."""

    def __init__(self, stores: Sequence[CompactRecords], order: np.ndarray | None = None) -> None:
        self.stores = list(stores)
        sizes = np.array([len(s) for s in self.stores], dtype=np.int64)
        self._first = np.concatenate([[0], np.cumsum(sizes)])
        total = int(self._first[-1])
        order = np.arange(total, dtype=np.int64) if order is None else np.asarray(order, np.int64)
        if len(order) and (order.min() < 0 or order.max() >= total):
            raise IndexError("view order outside the stores")
        order.flags.writeable = False
        #: positions in the concatenation of the stores, in view order
        self.order = order
        self._store = (np.searchsorted(self._first, order, side="right") - 1).astype(np.int32)

    def locate(self, i: int) -> tuple[CompactRecords, int]:
        """(store, index in it) of view position `i`."""
        s = int(self._store[i])
        return self.stores[s], int(self.order[i] - self._first[s])

    def __len__(self) -> int:
        return len(self.order)

    def _record(self, i: int) -> ImageRecord:
        store, k = self.locate(i)
        return store.record(k)

    def __repr__(self) -> str:
        return f"RecordsView({len(self)} images of {len(self.stores)} store(s))"

    def column(self, name: str) -> np.ndarray:
        """A per-image column (`heights`, `widths`, `box_counts`, ...) in view order."""
        return np.concatenate([getattr(s, name) for s in self.stores])[self.order]

    @property
    def heights(self) -> np.ndarray:
        return self.column("heights")

    @property
    def widths(self) -> np.ndarray:
        return self.column("widths")

    def file_names(self) -> Iterator[str]:
        for i in range(len(self)):
            store, k = self.locate(i)
            yield store.file_name(k)

    def image_ids(self) -> list[int | str]:
        out = []
        for i in range(len(self)):
            store, k = self.locate(i)
            out.append(store.image_id(k))
        return out
