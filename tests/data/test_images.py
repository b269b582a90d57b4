"""Opening single image files: every mode, orientation, oddity and bad file of the design."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import write_image
from tlcli.data import images as image_module
from tlcli.data.images import BadImageError, has_image_extension, is_hidden, load_image, probe_image


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(load_image(path))


def write_blank_png(path: Path, width: int, height: int) -> Path:
    """A real, valid 1-bit grayscale PNG of any size, streamed so it needs almost no memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then all-black pixels
    compressor = zlib.compressobj(9)
    rows_per_block = 1024
    parts = []
    for start in range(0, height, rows_per_block):
        parts.append(compressor.compress(row * min(rows_per_block, height - start)))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))
    return path


# --- modes -----------------------------------------------------------------------------------


def test_rgb_and_grayscale_keep_their_mode_and_pixels(tmp_path):
    rgb = write_image(tmp_path / "rgb.png", size=(7, 5), seed=3)
    with Image.open(rgb) as original:
        expected = np.asarray(original.convert("RGB"))
    loaded = load_image(rgb)
    assert loaded.mode == "RGB" and loaded.size == (7, 5)
    assert np.array_equal(np.asarray(loaded), expected)

    gray = write_image(tmp_path / "gray.png", size=(6, 4), mode="L", seed=4)
    loaded = load_image(gray)
    assert loaded.mode == "L" and loaded.size == (6, 4)
    with Image.open(gray) as original:
        assert np.array_equal(np.asarray(loaded), np.asarray(original))


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("TIFF", ".tif")])
def test_cmyk_loads_as_rgb_with_the_right_colour(tmp_path, fmt, suffix):
    path = tmp_path / f"print{suffix}"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, format=fmt)  # pure red ink
    loaded = load_image(path)
    assert loaded.mode == "RGB"
    red, green, blue = loaded.getpixel((8, 8))
    assert red > 220 and green < 40 and blue < 40


def test_rgba_transparent_pixels_come_out_white_and_opaque_ones_keep_their_colour(tmp_path):
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # fully transparent black
    image.putpixel((0, 0), (0, 0, 255, 255))  # opaque blue
    image.putpixel((1, 0), (0, 0, 0, 128))  # half-transparent black
    image.save(tmp_path / "rgba.png")
    loaded = load_image(tmp_path / "rgba.png")
    assert loaded.mode == "RGB"
    assert loaded.getpixel((3, 3)) == (255, 255, 255)
    assert loaded.getpixel((0, 0)) == (0, 0, 255)
    assert all(abs(value - 127) <= 1 for value in loaded.getpixel((1, 0)))


def test_gray_with_alpha_is_composited_onto_white(tmp_path):
    image = Image.new("LA", (3, 3), (0, 0))
    image.putpixel((0, 0), (50, 255))
    image.save(tmp_path / "la.png")
    loaded = load_image(tmp_path / "la.png")
    assert loaded.mode in ("RGB", "L")
    assert loaded.convert("RGB").getpixel((2, 2)) == (255, 255, 255)
    assert loaded.convert("RGB").getpixel((0, 0)) == (50, 50, 50)


def _palette_image() -> Image.Image:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([10, 200, 30, 200, 10, 30] + [0, 0, 0] * 254)
    image.putpixel((0, 0), 1)
    return image


def test_palette_without_transparency_gives_the_palette_colours(tmp_path):
    _palette_image().save(tmp_path / "pal.png")
    loaded = load_image(tmp_path / "pal.png")
    assert loaded.mode == "RGB"
    assert loaded.getpixel((0, 0)) == (200, 10, 30) and loaded.getpixel((3, 3)) == (10, 200, 30)


@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("GIF", ".gif")])
def test_palette_with_a_transparent_index_comes_out_white(tmp_path, fmt, suffix):
    path = tmp_path / f"pal-t{suffix}"
    _palette_image().save(path, format=fmt, transparency=0)
    loaded = load_image(path)
    assert loaded.mode == "RGB"
    assert loaded.getpixel((3, 3)) == (255, 255, 255)
    assert loaded.getpixel((0, 0)) == (200, 10, 30)


def test_palette_with_partial_alpha_table_is_blended_onto_white(tmp_path):
    _palette_image().save(tmp_path / "pal-a.png", transparency=b"\x80\xff")  # index 0 half transparent
    loaded = load_image(tmp_path / "pal-a.png")
    blended = loaded.getpixel((3, 3))
    alpha = 128 / 255
    expected = [round(c * alpha + 255 * (1 - alpha)) for c in (10, 200, 30)]
    assert all(abs(got - want) <= 2 for got, want in zip(blended, expected))
    assert loaded.getpixel((0, 0)) == (200, 10, 30)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path, suffix):
    values = np.array([[65535, 32768, 0], [257, 1000, 12850]], dtype=np.uint16)
    path = tmp_path / f"deep{suffix}"
    Image.fromarray(values).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")  # really stored with 16 bits
    loaded = load_image(path)
    assert loaded.mode == "L"
    # 65535 -> 255 and 32768 -> 128: divided by 257, where clipping would give 255 for all but 0 and 257.
    assert np.asarray(loaded).tolist() == [[255, 128, 0], [1, 4, 50]]


def test_bilevel_image_loads_as_black_and_white_gray(tmp_path):
    image = Image.new("1", (4, 2), 0)
    image.putpixel((1, 1), 1)
    image.save(tmp_path / "bits.png")
    loaded = load_image(tmp_path / "bits.png")
    assert loaded.mode == "L"
    assert np.asarray(loaded).tolist() == [[0, 0, 0, 0], [0, 255, 0, 0]]


# --- orientation -----------------------------------------------------------------------------


def _two_colour_jpeg(path: Path, orientation: int) -> Path:
    """40x20 as stored: left half red, right half blue, with an EXIF Orientation tag."""
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, quality=95, subsampling=0)
    return path


def _is(pixel, colour) -> bool:
    return all(abs(a - b) < 40 for a, b in zip(pixel, colour))


RED, BLUE = (255, 0, 0), (0, 0, 255)


def test_exif_orientation_6_rotates_to_portrait(tmp_path):
    loaded = load_image(_two_colour_jpeg(tmp_path / "o6.jpg", 6))
    assert loaded.size == (20, 40)  # transposed
    # Orientation 6 is displayed turned 90 degrees clockwise: the stored left edge ends on top.
    assert _is(loaded.getpixel((10, 5)), RED) and _is(loaded.getpixel((10, 35)), BLUE)


def test_exif_orientation_8_and_3(tmp_path):
    left_turn = load_image(_two_colour_jpeg(tmp_path / "o8.jpg", 8))
    assert left_turn.size == (20, 40)
    assert _is(left_turn.getpixel((10, 5)), BLUE) and _is(left_turn.getpixel((10, 35)), RED)
    upside_down = load_image(_two_colour_jpeg(tmp_path / "o3.jpg", 3))
    assert upside_down.size == (40, 20)
    assert _is(upside_down.getpixel((5, 10)), BLUE) and _is(upside_down.getpixel((35, 10)), RED)


def test_no_orientation_tag_leaves_the_image_alone(tmp_path):
    loaded = load_image(_two_colour_jpeg(tmp_path / "o1.jpg", 1))
    assert loaded.size == (40, 20)
    assert _is(loaded.getpixel((5, 10)), RED) and _is(loaded.getpixel((35, 10)), BLUE)


# --- odd but usable files --------------------------------------------------------------------


def test_png_content_named_jpg_loads_with_its_pixels(tmp_path):
    path = write_image(tmp_path / "really-a-png.jpg", size=(9, 6), fmt="PNG", seed=7)
    assert path.read_bytes().startswith(b"\x89PNG")
    assert probe_image(path).format == "PNG"
    rng = np.random.default_rng(7)
    expected = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    assert np.array_equal(_pixels(path), expected)  # lossless, so exactly what was written


def test_one_pixel_image_loads(tmp_path):
    Image.new("RGB", (1, 1), (12, 34, 56)).save(tmp_path / "dot.png")
    loaded = load_image(tmp_path / "dot.png")
    assert loaded.size == (1, 1) and loaded.getpixel((0, 0)) == (12, 34, 56)


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    assert probe_image(tmp_path / "anim.gif").frames == 3
    loaded = load_image(tmp_path / "anim.gif")
    assert loaded.mode == "RGB" and loaded.size == (8, 8)
    assert _is(loaded.getpixel((4, 4)), RED)


def test_animated_png_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((0, 0, 255), (255, 0, 0))]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    assert probe_image(tmp_path / "anim.png").frames == 2
    assert load_image(tmp_path / "anim.png").getpixel((4, 4)) == (0, 0, 255)


@pytest.mark.parametrize("name", ["X.JPG", "Y.PNG", "Z.Jpeg", "w.TIFF", "v.BMP", "u.webp"])
def test_upper_and_mixed_case_extensions_are_images(tmp_path, name):
    assert has_image_extension(Path(name))
    fmt = {".jpg": "JPEG", ".png": "PNG", ".jpeg": "JPEG", ".tiff": "TIFF", ".bmp": "BMP", ".webp": "WEBP"}[Path(name).suffix.lower()]
    path = write_image(tmp_path / name, size=(10, 10), fmt=fmt)
    assert load_image(path).size == (10, 10)


@pytest.mark.parametrize("name", ["notes.txt", "labels.csv", "README", "model.pt", "x.jpg.txt"])
def test_other_extensions_are_not_images(name):
    assert not has_image_extension(Path(name))


@pytest.mark.parametrize(
    "name,hidden",
    [(".DS_Store", True), ("._x.jpg", True), (".git", True), (".ipynb_checkpoints", True), ("Thumbs.db", True),
     ("~$lock.docx", True), ("x.jpg", False), ("cat", False), ("a.b.png", False)],
)
def test_hidden_names(name, hidden):
    assert is_hidden(name) is hidden


# --- unusable files --------------------------------------------------------------------------


def test_zero_byte_file_is_bad_with_a_reason(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    for read in (probe_image, load_image):
        with pytest.raises(BadImageError, match=r"empty file \(0 bytes\)"):
            read(path)


def test_text_named_jpg_is_not_an_image(tmp_path):
    path = tmp_path / "fake.jpg"
    path.write_text("this is not a JPEG")
    with pytest.raises(BadImageError, match="not an image"):
        probe_image(path)
    with pytest.raises(BadImageError, match="not an image"):
        load_image(path)


def test_truncated_jpeg_is_bad_on_decode(tmp_path):
    path = write_image(tmp_path / "cut.jpg", size=(128, 128), fmt="JPEG", quality=95)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    assert probe_image(path).width == 128  # the header survives, so only a full decode can tell
    with pytest.raises(BadImageError, match="cannot be decoded.*truncated"):
        load_image(path)


def test_truncated_png_is_bad_on_decode(tmp_path):
    path = write_image(tmp_path / "cut.png", size=(64, 64), seed=2)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(BadImageError, match="cannot be decoded"):
        load_image(path)


def test_jpeg_cut_inside_its_header_is_bad(tmp_path):
    path = write_image(tmp_path / "stub.jpg", size=(64, 64), fmt="JPEG")
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(BadImageError):
        load_image(path)


def test_decompression_bomb_above_the_limit_is_refused(tmp_path):
    # Just above MAX_PIXELS: PIL itself would only warn here.
    side = int(image_module.MAX_PIXELS**0.5) + 50
    path = write_blank_png(tmp_path / "bomb.png", side, side)
    assert path.stat().st_size < 1_000_000 and side * side > image_module.MAX_PIXELS
    with pytest.raises(BadImageError, match="decompression bomb"):
        probe_image(path)
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_image(path)


def test_decompression_bomb_far_above_the_limit_is_refused(tmp_path):
    # Above twice the limit PIL raises its own error; it must surface the same way.
    side = int((2 * image_module.MAX_PIXELS) ** 0.5) + 50
    path = write_blank_png(tmp_path / "big-bomb.png", side, side)
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_image(path)


def test_decompression_bomb_is_refused_even_when_pil_checks_are_off(tmp_path, monkeypatch):
    # Some libraries switch PIL's own check off globally; tlcli's limit must still hold.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    side = int(image_module.MAX_PIXELS**0.5) + 50
    path = write_blank_png(tmp_path / "bomb.png", side, side)
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_image(path)


def test_an_image_just_under_a_lowered_limit_still_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(image_module, "MAX_PIXELS", 400)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)
    write_image(tmp_path / "ok.png", size=(20, 20))
    write_image(tmp_path / "big.png", size=(21, 20))
    assert load_image(tmp_path / "ok.png").size == (20, 20)
    with pytest.raises(BadImageError, match="larger than 400 pixels"):
        load_image(tmp_path / "big.png")


def test_blank_png_helper_writes_a_real_png(tmp_path):
    # The bomb tests rely on write_blank_png producing a file PIL decodes like any other PNG.
    loaded = load_image(write_blank_png(tmp_path / "small.png", 13, 5))
    assert loaded.mode == "L" and loaded.size == (13, 5) and not np.asarray(loaded).any()
