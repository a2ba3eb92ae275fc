"""load_image / file_sha256 on real files made in the test (PIL, scikit-image photos)."""

from __future__ import annotations

import hashlib
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from mmfeat.featurizers.media import MediaError, file_sha256, load_image, to_rgb


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    skdata = pytest.importorskip("skimage.data")
    return skdata.astronaut()[::4, ::4].copy()  # 128x128 real photo (CC0)


@pytest.fixture()
def jpeg(tmp_path, photo):
    path = tmp_path / "astronaut.jpg"
    Image.fromarray(photo).save(path, quality=90)
    return path


# ----------------------------------------------------------------------------- failures


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        load_image(tmp_path / "nope.jpg")


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        load_image(p)


def test_directory(tmp_path):
    with pytest.raises(MediaError, match="directory"):
        load_image(tmp_path)


def test_truncated_jpeg(tmp_path, jpeg):
    data = jpeg.read_bytes()
    p = tmp_path / "trunc.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="truncated"):
        load_image(p)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # never flipped globally


def test_truncated_png(tmp_path, photo):
    full = tmp_path / "full.png"
    Image.fromarray(photo).save(full)
    data = full.read_bytes()
    p = tmp_path / "trunc.png"
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(MediaError, match="corrupt or truncated"):
        load_image(p)


def test_corrupt_bytes_after_valid_header(tmp_path, jpeg):
    data = bytearray(jpeg.read_bytes())
    rng = np.random.default_rng(0)
    start = len(data) // 4
    data[start:] = rng.integers(0, 256, len(data) - start, dtype=np.uint8).tobytes()
    p = tmp_path / "garbled.jpg"
    p.write_bytes(bytes(data))
    with pytest.raises(MediaError) as err:
        load_image(p)
    assert "garbled.jpg" in str(err.value)


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is text, not a PNG")
    with pytest.raises(MediaError, match="not a recognized image"):
        load_image(p)


def test_wrong_extension_is_sniffed(tmp_path, photo):
    p = tmp_path / "really_a_png.jpg"
    Image.fromarray(photo).save(p, format="PNG")
    img = load_image(p)
    assert img.mode == "RGB" and img.size == (128, 128)
    assert np.array_equal(np.asarray(img), photo)  # lossless PNG content, not decoded as JPEG


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_header_rejected(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(100_000, 100_000))  # 10 gigapixels declared, ~100 bytes on disk
    with pytest.raises(MediaError, match="too large"):
        load_image(p)


def test_max_pixels_checked_before_decoding(tmp_path, jpeg, monkeypatch):
    p = tmp_path / "big.png"
    p.write_bytes(_png_header_only(12_000, 10_000))  # 120 MP: under PIL's own bomb error, over ours
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(1))
    with pytest.raises(MediaError, match="exceeds max_pixels"):
        load_image(p)
    with pytest.raises(MediaError, match="not decoded"):
        load_image(jpeg, max_pixels=1000)
    assert decoded == []


# ----------------------------------------------------------------------------- good but unusual files


def test_plain_jpeg(jpeg, photo):
    img = load_image(jpeg)
    assert img.mode == "RGB" and img.size == (128, 128)
    assert np.abs(np.asarray(img).astype(int) - photo).mean() < 8


def test_cmyk_jpeg(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(p)  # pure red in CMYK
    img = load_image(p)
    assert img.mode == "RGB"
    r, g, b = np.asarray(img).reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 60 and b < 60


def test_palette_with_transparency(tmp_path):
    p = tmp_path / "pal.png"
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 black, index 1 blue
    im.paste(1, (0, 0, 4, 8))
    im.info["transparency"] = 0
    im.save(p, transparency=0)
    arr = np.asarray(load_image(p))
    assert arr.shape == (8, 8, 3)
    assert (arr[:, :4] == [0, 0, 255]).all()  # opaque blue kept
    assert (arr[:, 4:] == 255).all()  # transparent black -> white background


def test_palette_gif(tmp_path, photo):
    p = tmp_path / "anim.gif"
    Image.fromarray(photo).convert("P").save(p)
    img = load_image(p)
    assert img.mode == "RGB" and img.size == (128, 128)


def test_16bit_grayscale(tmp_path):
    p = tmp_path / "gray16.png"
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    Image.fromarray(ramp).save(p)
    arr = np.asarray(load_image(p))
    assert arr.shape == (8, 64, 3)
    assert arr[0, 0, 0] == 0 and arr[0, -1, 0] == 255
    assert 100 < arr[0, 32, 0] < 160  # scaled, not clipped to white


def test_32bit_int_and_float_tiff(tmp_path):
    p = tmp_path / "int32.tif"
    Image.fromarray(np.arange(64, dtype=np.int32).reshape(8, 8) * 1000, mode="I").save(p)
    arr = np.asarray(load_image(p))
    assert arr.min() == 0 and arr.max() == 245  # 63000 / 257
    f = tmp_path / "float.tif"
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), mode="F").save(f)
    arr = np.asarray(load_image(f))
    assert arr.min() == 0 and arr.max() == 255


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_composited_over_white(tmp_path, mode):
    p = tmp_path / f"alpha_{mode}.png"
    base = np.zeros((8, 8, 4), np.uint8)
    base[..., :3] = 40
    base[:, :4, 3] = 255  # left half opaque, right half fully transparent
    im = Image.fromarray(base, "RGBA")
    (im if mode == "RGBA" else im.convert("LA")).save(p)
    arr = np.asarray(load_image(p))
    assert arr.shape == (8, 8, 3)
    assert (arr[:, :4] == 40).all() and (arr[:, 4:] == 255).all()


def test_one_bit_and_gray(tmp_path):
    p = tmp_path / "bw.png"
    Image.new("1", (5, 3), 1).save(p)
    assert np.asarray(load_image(p)).shape == (3, 5, 3)


def test_exif_orientation_applied(tmp_path, photo):
    p = tmp_path / "rotated.jpg"
    im = Image.fromarray(photo[:, :64])  # 64 wide, 128 tall
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    im.save(p, exif=exif.tobytes())
    assert load_image(p).size == (128, 64)


def test_to_rgb_in_memory_modes():
    for mode in ["L", "1", "I;16", "I", "F", "CMYK", "YCbCr", "RGBA", "LA", "P", "PA", "HSV"]:
        assert to_rgb(Image.new(mode, (3, 2))).mode == "RGB", mode


def test_file_sha256(tmp_path, jpeg):
    assert file_sha256(jpeg) == hashlib.sha256(jpeg.read_bytes()).hexdigest()
    with pytest.raises(MediaError):
        file_sha256(tmp_path / "missing")
