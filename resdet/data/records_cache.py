"""Parse an annotation file once: its `CompactRecords` in one cache file that later runs map.

`cached_records(inputs, build, cache_dir=...)`: the records of `inputs` (a JSON-able mapping that
names everything the records follow from: the file's resolved path, size and mtime_ns, the
reader's version and options) from `$RESDET_CACHE/records/<key>.rec`, where `key` hashes
`inputs`; on a miss `build()` parses, the file is written (to a temporary name, then renamed) and
mapped. An edited annotation file has another size or mtime, hence another key.

Concurrent callers (the ranks of a DDP job, several jobs on one node) take an exclusive
`fcntl.flock` on `<key>.lock`: the first parses and writes, the others wait for it and map its
file, so a node parses once, whichever rank gets there first, and every rank maps the same pages.
A damaged file (truncated, a wrong header, a checksum or offsets that do not match) is rebuilt
with one `DatasetWarning` line; a cache folder that cannot be written is one warning and the
records are parsed in memory, as without a cache. Files are only ever replaced (written under a
temporary name, then renamed), never rewritten in place: a process mapping the old file keeps
its pages (truncating a mapped file in place would kill its readers with SIGBUS). A cache folder
shared by several nodes works where its file system honours `flock` (local disks, NFSv4).

File layout: `MAGIC`, the header length (uint64 little-endian), a JSON header (`version`, `size`
of the whole file, `crc32` of the array data, `arrays`: name -> dtype, shape, offset; `id_kind`,
`masks`; `meta`: what the reader returns beside the records, e.g. class names and its warnings),
then each array's bytes at a 64-byte aligned offset. Mapping checks magic, size, checksum and
`CompactRecords.validate`: about 0.1 s for COCO train with masks.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import hashlib
import json
import mmap
import os
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from resdet.data.compact import CompactRecords, CompactRecordsError
from resdet.data.errors import DatasetWarning
from resdet.utils.paths import cache_root

#: Bump when the file layout changes (old files then have other keys and are left alone).
FORMAT_VERSION = 1
MAGIC = b"RESDETRC"
_ALIGN = 64


class DamagedCacheError(Exception):
    """A cache file that cannot be mapped as written."""


def trim_heap() -> None:
    """Hand the C heap's free memory back to the system (glibc `malloc_trim`; nothing elsewhere).
    Parsing a COCO-sized JSON frees hundreds of MB of Python objects that the allocator would
    otherwise keep: 570 MB stayed in a process after parsing COCO train with masks, 9 MB after
    this (28 ms)."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


_libc: Any = None


def records_dir(cache_dir: str | Path | None = None) -> Path:
    """`<cache root>/records` (`resdet.utils.paths.cache_root`)."""
    return cache_root(cache_dir) / "records"


def file_identity(path: str | Path) -> dict[str, Any] | None:
    """What identifies a file's content for a cache key (resolved path, size, mtime_ns); None
    when it cannot be read (the reader then reports it)."""
    try:
        st = os.stat(path)
        return {"file": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        return None


def cache_key(inputs: dict[str, Any]) -> str:
    text = json.dumps({"format": FORMAT_VERSION, **inputs}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def write_records(path: str | Path, records: CompactRecords, meta: dict[str, Any]) -> None:
    """Write `records` and `meta` (JSON-able) to `path` atomically (a temporary file in the same
    folder, fsynced, then renamed over it)."""
    path = Path(path)
    layout, offset = {}, 0
    for name, arr in records.arrays.items():
        layout[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "offset": offset}
        offset = _aligned(offset + arr.nbytes)
    crc = 0
    for name, arr in records.arrays.items():
        data = np.ascontiguousarray(arr).view(np.uint8).reshape(-1)
        crc = zlib.crc32(data, crc)
        crc = zlib.crc32(bytes(_aligned(arr.nbytes) - arr.nbytes), crc)
    header = {
        "version": FORMAT_VERSION,
        "arrays": layout,
        "id_kind": records.id_kind,
        "masks": records.masks,
        "crc32": crc,
        "meta": meta,
    }
    # the header states the file size, which depends on the header's length: fix it by iterating
    start = 0
    for _ in range(4):
        header["size"] = start + offset
        text = json.dumps(header).encode()
        new_start = _aligned(len(MAGIC) + 8 + len(text))
        if new_start == start:
            break
        start = new_start
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + len(text).to_bytes(8, "little") + text)
            f.write(bytes(start - f.tell()))
            for arr in records.arrays.values():
                f.write(np.ascontiguousarray(arr).view(np.uint8).reshape(-1).data)
                f.write(bytes(_aligned(arr.nbytes) - arr.nbytes))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def read_records(path: str | Path) -> tuple[CompactRecords, dict[str, Any]]:
    """Map `path` (read-only, shared pages): its records and meta. `DamagedCacheError` says why
    a file cannot be used; `FileNotFoundError` when there is none."""
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < len(MAGIC) + 8:
            raise DamagedCacheError(f"{size} bytes, shorter than a header")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        return _parse_mapped(mm, size, str(path))
    except DamagedCacheError:
        raise
    except (CompactRecordsError, ValueError, KeyError, TypeError) as e:
        raise DamagedCacheError(f"{type(e).__name__}: {e}") from None


def _parse_mapped(mm: mmap.mmap, size: int, origin: str) -> tuple[CompactRecords, dict[str, Any]]:
    if mm[: len(MAGIC)] != MAGIC:
        raise DamagedCacheError("not a records cache file (magic)")
    n = int.from_bytes(mm[len(MAGIC) : len(MAGIC) + 8], "little")
    if n > size - len(MAGIC) - 8:
        raise DamagedCacheError("header longer than the file")
    try:
        header = json.loads(mm[len(MAGIC) + 8 : len(MAGIC) + 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DamagedCacheError(f"unreadable header ({e})") from None
    if header.get("version") != FORMAT_VERSION:
        raise DamagedCacheError(f"format version {header.get('version')}, not {FORMAT_VERSION}")
    if header["size"] != size:
        raise DamagedCacheError(f"{size} bytes where the header says {header['size']}")
    start = _aligned(len(MAGIC) + 8 + n)
    if zlib.crc32(memoryview(mm)[start:]) != header["crc32"]:
        raise DamagedCacheError("checksum mismatch")
    arrays = {}
    for name, spec in header["arrays"].items():
        dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        offset = start + spec["offset"]
        if offset + count * dtype.itemsize > size:
            raise DamagedCacheError(f"array {name} runs past the end of the file")
        if count == 0:
            arr = np.zeros(shape, dtype)
        else:
            arr = np.frombuffer(mm, dtype=dtype, count=count, offset=offset).reshape(shape)
        arrays[name] = arr
    records = CompactRecords(
        arrays, id_kind=header["id_kind"], masks=header["masks"], validate=True, origin=origin
    )
    return records, header["meta"]


def map_records(path: str | Path) -> CompactRecords:
    """The records of a cache file (how a mapped store unpickles in a spawned process)."""
    return read_records(path)[0]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


Build = Callable[[], tuple[CompactRecords, dict[str, Any]]]


def cached_records(
    inputs: dict[str, Any],
    build: Build,
    *,
    cache_dir: str | Path | None = None,
    describe: str = "the annotation file",
) -> tuple[CompactRecords, dict[str, Any]]:
    """(records, meta) for `inputs`: mapped from the cache, or built by `build()` (under the
    lock, once per node) and cached first. `describe` names the source in warnings."""
    folder = records_dir(cache_dir)
    path = folder / f"{cache_key(inputs)}.rec"
    with contextlib.suppress(OSError, DamagedCacheError):
        return read_records(path)
    with contextlib.ExitStack() as stack:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            stack.enter_context(_locked(folder / f"{path.stem}.lock"))
        except OSError as e:
            warnings.warn(
                f"cannot use the records cache in {folder} ({e}); parsing {describe} in memory",
                DatasetWarning,
                stacklevel=3,
            )
            return build()
        try:
            return read_records(path)  # built by another process while this one waited
        except FileNotFoundError:
            pass
        except OSError as e:
            warnings.warn(
                f"cannot read the records cache {path} ({e}); parsing {describe} in memory",
                DatasetWarning,
                stacklevel=3,
            )
            return build()
        except DamagedCacheError as e:
            warnings.warn(
                f"{path}: damaged records cache ({e}); rebuilding it from {describe}",
                DatasetWarning,
                stacklevel=3,
            )
        records, meta = build()
        try:
            write_records(path, records, meta)
        except OSError as e:
            warnings.warn(
                f"cannot write the records cache {path} ({e}); {describe} stays in memory",
                DatasetWarning,
                stacklevel=3,
            )
            return records, meta
        del records
        return read_records(path)
