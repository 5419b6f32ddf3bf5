"""Safe decoding: every mode becomes RGB uint8 (H, W, 3) or a clear error naming the file."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from resdet.data import BadImageError, read_image


def save(path, img: Image.Image, **kw):
    img.save(path, **kw)
    return path


def gradient(h=6, w=9) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 20, y * 30, (x + y) * 10], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("mode", ["L", "1", "P", "LA", "RGBA", "CMYK", "I;16", "F"])
def test_modes(tmp_path, mode):
    rgb = Image.fromarray(gradient())
    src = rgb.convert(mode)
    fmt = {"CMYK": "TIFF", "F": "TIFF"}.get(mode, "PNG")
    path = save(tmp_path / f"x.{fmt.lower()}", src, format=fmt)
    if mode in ("I;16", "F"):
        with pytest.raises(BadImageError, match=r"x\.(png|tiff).*bit"):
            read_image(path)
        return
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (6, 9, 3) and out.flags.writeable
    # Pillow's own conversion of the stored pixels is the expectation; alpha is
    # dropped, not composited
    stored = Image.open(path)
    expected = np.asarray(
        stored.convert("RGBA").convert("RGB") if "A" in mode else stored.convert("RGB")
    )
    np.testing.assert_array_equal(out, expected)
    if mode == "L":
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    if mode == "RGBA":
        np.testing.assert_array_equal(out, gradient())


def test_sixteen_bit_png_is_an_error_not_a_squash(tmp_path):
    path = tmp_path / "depth.png"
    Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    with pytest.raises(BadImageError, match="depth.png.*16-bit"):
        read_image(path)


def test_exif_orientation_is_applied(tmp_path):
    raw = gradient(6, 9)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = save(tmp_path / "o.png", Image.fromarray(raw), exif=exif)
    out = read_image(path)
    assert out.shape == (9, 6, 3)
    np.testing.assert_array_equal(out, np.rot90(raw, k=-1))


@pytest.mark.parametrize(
    "content,needle", [(b"", "zero-byte"), (b"this is not an image\n", "not an image")]
)
def test_empty_and_non_image_files(tmp_path, content, needle):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(BadImageError, match=f"bad.jpg.*{needle}"):
        read_image(path)


def test_truncated_jpeg_fails_inside_the_guard(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        buf, "JPEG"
    )
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(BadImageError, match="cut.jpg.*truncated"):
        read_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(BadImageError, match="nope.jpg.*not found"):
        read_image(tmp_path / "nope.jpg")


def test_decompression_bomb_limit_is_kept(tmp_path, monkeypatch):
    path = save(tmp_path / "big.png", Image.fromarray(gradient(40, 40)))
    limit_before = Image.MAX_IMAGE_PIXELS
    assert read_image(path).shape == (40, 40, 3)
    assert Image.MAX_IMAGE_PIXELS == limit_before
    monkeypatch.setattr(
        Image, "MAX_IMAGE_PIXELS", 40 * 40 // 3
    )  # the image is over twice the limit
    with pytest.raises(BadImageError, match="big.png.*decompression-bomb"):
        read_image(path)


def test_error_from_a_dataloader_worker_keeps_its_one_line_message(tmp_path):
    """torch re-creates a worker's exception from its formatted traceback; the message stays the
    original one and the traceback moves to `worker_traceback`."""
    path = tmp_path / "cut.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not much of a JPEG")

    class Files(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int):
            return read_image(path)

    with pytest.raises(BadImageError) as direct:
        read_image(path)
    loader = torch.utils.data.DataLoader(Files(), num_workers=1, batch_size=None)
    with pytest.raises(BadImageError) as from_worker:
        next(iter(loader))
    assert str(from_worker.value) == str(direct.value) and "\n" not in str(direct.value)
    assert from_worker.value.worker_traceback.startswith(
        "Caught BadImageError in DataLoader worker process 0"
    )
    assert direct.value.worker_traceback is None
