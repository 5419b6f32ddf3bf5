"""Safe image decoding: any file -> RGB `uint8` array of shape (H, W, 3), or an
error naming the file.

Policy:
- Grayscale (`L`, `1`), palette (`P`, `PA`), `LA`, `RGBA`, `CMYK`, `YCbCr` and `LAB` are converted
  to RGB; alpha is dropped, not composited.
- 16- and 32-bit modes (`I;16*`, `I`, `F`) are refused: squashing them to 8 bits silently would
  change what the network sees. So are files Pillow would open as 8-bit `RGB`/`RGBA` while the
  file stores 16 bits a channel (48/64-bit PNG, `LA` 16-bit PNG, 16-bit PPM): Pillow keeps only
  each sample's high byte.
- EXIF orientation is applied (the pixels are turned the way a viewer shows them), as detectron2
  does; the dataset then checks the decoded size against the annotation's, so a file whose frame
  disagrees with its boxes is an error rather than wrong training data.
- Pillow's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`) is left as it is.
- The whole decode runs inside the guard, so truncated files fail here and not later.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


class BadImageError(ValueError):
    """An image file cannot be decoded into RGB pixels; the message names the file.

    `str(e)` is that one-line message in every process. An exception raised in a DataLoader
    worker reaches the main process re-created by torch (`torch._utils.ExceptionWrapper.reraise`)
    as `type(e)(text)`, where `text` is "Caught BadImageError in DataLoader worker process N.\n
    Original Traceback (most recent call last): ...\nresdet.data.image_io.BadImageError: <message>":
    only the class and that formatted text cross the process boundary. The constructor recognises
    the form, keeps `<message>` (the text after the last exception line, which is the one raised)
    and moves the worker's traceback to `worker_traceback`, so a command line reports the file in
    one line instead of a worker traceback.
    """

    def __init__(self, message: str) -> None:
        self.worker_traceback: str | None = None
        cls = type(self)
        last_line = f"\n{cls.__module__}.{cls.__qualname__}: "
        if isinstance(message, str) and message.startswith(f"Caught {cls.__name__} in DataLoader"):
            worker_traceback, found, original = message.rpartition(last_line)
            if found:
                self.worker_traceback, message = worker_traceback, original.rstrip("\n")
        super().__init__(message)


def _deep_storage(img: Image.Image) -> str | None:
    """The file's own mode (e.g. "RGB", "LA") when it stores more than 8 bits a sample that Pillow
    would decode into an 8-bit mode, else None. Read from the decoder's raw mode before decoding:
    `RGB;16B` (PNG), `RGB;16L` (TIFF), or a PPM's maximum value above 255."""
    for tile in img.tile:
        args = tile[3]
        raw = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else ""
        if not isinstance(raw, str):
            continue
        base, _, bits = raw.partition(";")
        if bits in ("16B", "16L", "16N"):  # not BMP's "BGR;16": 5-6-5 bits in 16
            return base
        if tile[0] == "ppm" and len(args) > 1 and isinstance(args[1], int) and args[1] > 255:
            return base
    return None


def read_image(path: str | Path) -> np.ndarray:
    """Decode `path` into an RGB array (H, W, 3) `uint8` with EXIF orientation applied."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise BadImageError(f"{path}: zero-byte image file")
        with Image.open(path) as img:
            if img.mode in _HIGH_DEPTH_MODES:
                raise BadImageError(
                    f"{path}: {img.mode} ({'16' if 'I;16' in img.mode else '32'}-bit) "
                    "images are not supported; convert them to 8-bit RGB explicitly"
                )
            deep = _deep_storage(img)
            if deep is not None:
                raise BadImageError(
                    f"{path}: 16-bit {deep} images are not supported (Pillow would cut them to "
                    "8 bits); convert them to 8-bit RGB explicitly"
                )
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode != "RGB":
                with warnings.catch_warnings():
                    # "Palette images with transparency ... should be converted to RGBA":
                    # alpha is dropped anyway
                    warnings.simplefilter("ignore", UserWarning)
                    img = img.convert("RGB")
            return np.array(img, dtype=np.uint8)  # writable copy: torch.from_numpy needs one
    except BadImageError:
        raise
    except FileNotFoundError:
        raise BadImageError(f"{path}: image file not found") from None
    except UnidentifiedImageError:
        raise BadImageError(f"{path}: not an image file (Pillow cannot identify it)") from None
    except Image.DecompressionBombError as e:
        raise BadImageError(f"{path}: refused by Pillow's decompression-bomb limit: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImageError(f"{path}: cannot decode image ({e}); truncated or corrupt?") from None
