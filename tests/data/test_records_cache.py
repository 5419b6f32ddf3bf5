"""The records cache (`resdet.data.records_cache`): parse once, map afterwards; keyed by the file
and the options; damaged files rebuilt with one warning; concurrent readers parse once."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import time
import warnings
from pathlib import Path

import pytest
from coco_records import coco_annotation
from test_compact_records import assert_records_equal

import resdet.data.coco as coco_module
from resdet.data import DatasetWarning
from resdet.data.catalog import load_source
from resdet.data.coco import load_coco
from resdet.data.records_cache import records_dir

pytestmark = pytest.mark.filterwarnings("ignore:.*dropped 1 box")

SQUARE = [[10.25, 10, 30, 10, 30, 30.5, 10, 30]]


def write(path: Path, images: int = 3, extra: int = 0) -> Path:
    anns = [
        {**coco_annotation(i + 1, i % images + 1, (2, 2, 20, 20), 7), "segmentation": SQUARE}
        for i in range(2 * images + extra)
    ]
    # one box outside its image: dropped, and the drop warning must come back from the cache too
    anns.append(
        {**coco_annotation(999, 1, (500, 500, 5, 5), 7), "segmentation": [[1, 1, 2, 2, 1, 2]]}
    )
    data = {
        "images": [
            {"id": i, "file_name": f"{i}.jpg", "height": 40, "width": 50}
            for i in range(1, images + 1)
        ],
        "annotations": anns,
        "categories": [{"id": 7, "name": "dog"}],
    }
    path.write_text(json.dumps(data))
    return path


def load(path: Path, cache: Path, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        src = load_coco(path, path.parent, masks=True, cache=True, cache_dir=cache, **kw)
    return src, [str(w.message) for w in caught]


def cache_files(cache: Path) -> list[Path]:
    return sorted(records_dir(cache).glob("*.rec"))


def test_second_read_maps_the_file_and_repeats_the_warning(tmp_path):
    path, cache = write(tmp_path / "a.json"), tmp_path / "cache"
    first, told_first = load(path, cache)
    (file,) = cache_files(cache)
    second, told_second = load(path, cache)
    assert first.records.origin == second.records.origin == str(file)
    assert told_first == told_second and len(told_first) == 1
    assert "dropped 1 box" in told_first[0]
    assert second.class_names == ["dog"] and second.category_ids == [7]
    uncached = load_coco(path, path.parent, masks=True, cache=False)
    for a, b in zip(uncached.records, second.records, strict=True):
        assert_records_equal(a, b)
    # a mapped store pickles as its path (a spawned worker maps it again)
    assert len(pickle.dumps(second.records)) < 500
    assert_records_equal(pickle.loads(pickle.dumps(second.records))[2], second.records[2])


def test_the_key_follows_the_file_and_the_options(tmp_path):
    path, cache = write(tmp_path / "a.json"), tmp_path / "cache"
    load(path, cache)
    load_coco(path, tmp_path, cache=True, cache_dir=cache)  # boxes only: another entry
    load_coco(path, tmp_path / "other", masks=True, cache=True, cache_dir=cache)  # other folder
    assert len(cache_files(cache)) == 3
    time.sleep(0.01)
    write(path, extra=1)  # edited: another size and mtime
    src, _ = load(path, cache)
    assert len(cache_files(cache)) == 4 and len(src.records[0].boxes) == 3


@pytest.mark.parametrize("damage", ["truncate", "flip_data", "garbage_header", "empty"])
def test_a_damaged_file_is_rebuilt_with_one_warning(tmp_path, damage):
    path, cache = write(tmp_path / "a.json"), tmp_path / "cache"
    good, _ = load(path, cache)
    (file,) = cache_files(cache)
    raw = bytearray(file.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) - 70]
    elif damage == "flip_data":
        raw[-70] ^= 0xFF
    elif damage == "garbage_header":
        raw[20:30] = b"x" * 10
    else:
        raw = bytearray()
    file.unlink()  # a new file: rewriting the one `good` maps in place would crash it (SIGBUS)
    file.write_bytes(bytes(raw))
    src, told = load(path, cache)
    damaged = [t for t in told if "damaged records cache" in t]
    assert len(damaged) == 1 and str(file) in damaged[0] and "rebuilding it" in damaged[0]
    for a, b in zip(good.records, src.records, strict=True):
        assert_records_equal(a, b)
    _, told = load(path, cache)
    assert not [t for t in told if "damaged records cache" in t]  # rebuilt: mapped quietly


def test_an_unusable_cache_folder_is_one_warning(tmp_path):
    path = write(tmp_path / "a.json")
    (tmp_path / "file").write_text("not a folder")
    src, told = load(path, tmp_path / "file")
    assert src.records.origin is None and len(src.records) == 3
    assert sum("cannot use the records cache" in t for t in told) == 1


def test_small_files_are_parsed_each_time_unless_asked(tmp_path, monkeypatch):
    path, cache = write(tmp_path / "a.json"), tmp_path / "cache"
    entry = {"format": "coco", "ann_file": str(path), "image_dir": str(tmp_path)}
    with pytest.warns(DatasetWarning):
        assert load_source(entry, cache_dir=str(cache)).records.origin is None
    assert not cache_files(cache)
    monkeypatch.setattr(coco_module, "MIN_CACHED_BYTES", 0)
    with pytest.warns(DatasetWarning):
        assert load_source(entry, cache_dir=str(cache)).records.origin is not None


def _reader(args):
    path, cache, start = args
    while time.time() < start:  # all start together
        time.sleep(0.001)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = load_coco(path, path.parent, masks=True, cache=True, cache_dir=cache)
    return src.records.origin, len(src.records)


def test_concurrent_readers_parse_once(tmp_path, monkeypatch):
    """Four processes (DDP ranks) read one file at once: one parses under the lock, the others
    wait and map its file."""
    path, cache, log = write(tmp_path / "a.json"), tmp_path / "cache", tmp_path / "parses"
    parse = coco_module._parse

    def slow_parse(*args):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        return parse(*args)

    monkeypatch.setattr(coco_module, "_parse", slow_parse)
    start = time.time() + 0.5
    with multiprocessing.get_context("fork").Pool(4) as pool:
        results = pool.map(_reader, [(path, cache, start)] * 4)
    assert len(log.read_text().split()) == 1
    (file,) = cache_files(cache)
    assert results == [(str(file), 3)] * 4
