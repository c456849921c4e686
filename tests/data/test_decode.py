import io
from pathlib import Path

import numpy as np
import pytest
from fixtures import save, xray_like
from PIL import Image

from covid_xray.data.cache import ImageCache
from covid_xray.data.decode import ImageError, decode_grayscale, quality_problem, sha256_file


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_every_colour_mode_decodes_to_grayscale(tmp_path: Path, mode: str):
    image = xray_like(1, "covid").convert(mode)
    decoded = decode_grayscale(save(image, tmp_path / f"x.{'jpg' if mode in ('RGB', 'L') else 'png'}"))
    assert decoded.mode == "L" and decoded.size == (96, 96)


def test_sixteen_bit_png_is_scaled_to_full_8_bit_range(tmp_path: Path):
    array = (np.arange(96 * 96).reshape(96, 96) % 4096).astype(np.uint16)
    Image.fromarray(array).save(tmp_path / "deep.png")
    decoded = np.asarray(decode_grayscale(tmp_path / "deep.png"))
    assert decoded.min() == 0 and decoded.max() == 255


def test_png_named_jpg_is_read_by_content(tmp_path: Path):
    path = save(xray_like(2, "normal"), tmp_path / "really-a-png.jpg", format="PNG")
    assert decode_grayscale(path).size == (96, 96)


def test_exif_orientation_is_applied(tmp_path: Path):
    image = xray_like(3, "normal").resize((120, 60))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert decode_grayscale(tmp_path / "rotated.jpg").size == (60, 120)


def test_bad_files_raise_image_error_with_reason(tmp_path: Path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        decode_grayscale(tmp_path / "empty.png")
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4\n1 0 obj\n")
    with pytest.raises(ImageError, match="not a readable image"):
        decode_grayscale(tmp_path / "doc.pdf")
    buffer = io.BytesIO()
    xray_like(4, "covid").save(buffer, format="PNG")
    (tmp_path / "truncated.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        decode_grayscale(tmp_path / "truncated.png")


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path):
    Image.new("L", (3000, 3000)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match="image too large: 3000x3000 = 9000000 pixels > 1000000"):
        decode_grayscale(tmp_path / "big.png", max_pixels=1_000_000)


def test_quality_problems():
    assert quality_problem(Image.new("L", (40, 200), 0), min_side=64) == "image too small: 40x200 (minimum side 64)"
    assert quality_problem(Image.new("L", (100, 500), 0), min_side=64) == "extreme aspect ratio 100x500"
    assert quality_problem(Image.new("L", (100, 100), 128), min_side=64) == "nearly constant image"
    assert quality_problem(xray_like(5, "covid"), min_side=64) is None


def test_cache_decodes_once_and_again_when_settings_change(tmp_path: Path):
    path = save(xray_like(6, "covid"), tmp_path / "a.png")
    sha = sha256_file(path)
    cache = ImageCache(tmp_path / "cache", image_size=32, max_pixels=10**7, min_side=32)
    first = cache.get(path, sha)
    second = cache.get(path, sha)
    assert (cache.misses, cache.hits) == (1, 1)
    assert np.array_equal(first.pixels, second.pixels) and first.pixels.shape == (32, 32)
    other = ImageCache(tmp_path / "cache", image_size=48, max_pixels=10**7, min_side=32)
    assert other.get(path, sha).pixels.shape == (48, 48) and other.misses == 1


def test_multi_frame_files_are_refused_not_read_by_their_first_frame(tmp_path: Path):
    frames = [xray_like(seed, "covid") for seed in (20, 21, 22)]
    for suffix in ("gif", "tif"):
        frames[0].save(tmp_path / f"stack.{suffix}", save_all=True, append_images=frames[1:])
        with pytest.raises(ImageError, match=r"multi-frame image \(3 frames in one (GIF|TIFF) file\)"):
            decode_grayscale(tmp_path / f"stack.{suffix}")
    frames[0].save(tmp_path / "one.gif")  # a one-frame GIF is an image like any other
    assert decode_grayscale(tmp_path / "one.gif").size == (96, 96)


def test_a_float_tiff_is_stretched_like_16_bit_not_clipped_to_black(tmp_path: Path):
    original = np.asarray(xray_like(23, "normal"), dtype=np.float32)
    Image.fromarray(original / 255.0, mode="F").save(tmp_path / "unit.tif")  # 0..1 floats: black when clipped
    decoded = np.asarray(decode_grayscale(tmp_path / "unit.tif"), dtype=np.float32)
    stretched = (original - original.min()) / (original.max() - original.min()) * 255.0
    assert np.abs(decoded - stretched).max() <= 1.0
    Image.fromarray(np.full((96, 96), np.nan, np.float32), mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(ImageError, match="float image with 9216 NaN or infinite pixels"):
        decode_grayscale(tmp_path / "nan.tif")
