"""A corpus of bad and unusual inputs, generated here: the CLI either converts what detectron2's read_image can
convert (and says so), or exits 2 with ONE line naming the file and the problem. Never a traceback."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from d2debug.cli import main


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h (no real pixel data)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"")) + _png_chunk(b"IEND", b"")


def _scene(w=320, h=240) -> np.ndarray:
    from d2debug.demo.data import random_scene, render_scene

    return render_scene(random_scene(11, w, h))


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _broken_corpus() -> dict[str, bytes]:
    jpg = _bytes(Image.fromarray(_scene()), "JPEG", quality=90)
    png = _bytes(Image.fromarray(_scene()), "PNG")
    return {
        "empty.jpg": b"",
        "text_named.jpg": b"definitely not a JPEG, just some text\n" * 10,
        "truncated.jpg": jpg[: len(jpg) // 3],
        "truncated.png": png[: len(png) // 3],
        "zero_height.png": _png_header_only(64, 0),
        "bomb.png": _png_header_only(30000, 30000),
        "html_named.png": b"<html><body>404 not found</body></html>",
        "random_bytes.jpg": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    }


def _convertible_corpus() -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, a word the conversion note must contain)."""
    rgb = Image.fromarray(_scene())
    gray16 = Image.fromarray((np.asarray(rgb.convert("L")).astype(np.uint16) * 257)).convert("I;16")
    exif = Image.Exif()
    exif[0x0112] = 42  # not an orientation
    frames = [Image.fromarray(_scene()).convert("P"), Image.fromarray(_scene()[::-1].copy()).convert("P")]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return {
        "gray16.png": (_bytes(gray16, "PNG"), "16-bit"),
        "cmyk.jpg": (_bytes(rgb.convert("CMYK"), "JPEG"), "CMYK"),
        "palette.png": (_bytes(rgb.convert("P"), "PNG"), "palette"),
        "gray.png": (_bytes(rgb.convert("L"), "PNG"), "grayscale"),
        "rgba.png": (_bytes(rgb.convert("RGBA"), "PNG"), "alpha"),
        "animated.gif": (gif.getvalue(), "frame"),
        "bad_orientation.jpg": (_bytes(rgb, "JPEG", exif=exif.tobytes()), "invalid EXIF orientation"),
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    for name, data in _broken_corpus().items():
        (d / name).write_bytes(data)
    for name, (data, _) in _convertible_corpus().items():
        (d / name).write_bytes(data)
    Image.new("RGB", (1, 1), (200, 10, 10)).save(d / "one_pixel.png")
    return d


def _run(capsys, *args):
    code = main(["compare", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("name", sorted(_broken_corpus()))
def test_broken_images_fail_with_one_line(corpus, capsys, name):
    code, _, err = _run(capsys, "--image", corpus / name)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: ") and name in lines[0]


def test_bomb_is_refused_by_pillows_limit(corpus, capsys):
    _, _, err = _run(capsys, "--image", corpus / "bomb.png")
    assert "decompression-bomb" in err


@pytest.mark.parametrize("name", sorted(_convertible_corpus()))
def test_convertible_images_are_converted_and_reported(corpus, capsys, name):
    word = _convertible_corpus()[name][1]
    code, out, err = _run(capsys, "--image", corpus / name, "--set", "channel_order=swapped")
    assert code == 0, err
    assert word.lower() in out.lower(), out


def test_one_pixel_image_runs(corpus, capsys):
    code, out, err = _run(capsys, "--image", corpus / "one_pixel.png", "--json")
    assert code == 0, err


def test_directory_and_missing_paths(corpus, capsys, tmp_path):
    code, _, err = _run(capsys, "--image", corpus)
    assert code == 2 and "not a file" in err and str(corpus) in err
    code, _, err = _run(capsys, "--config", tmp_path / "nope.yaml", "--weights", tmp_path / "w.pth")
    assert code == 2 and "nope.yaml: config not found" in err


@pytest.mark.parametrize("yaml_text,needle", [
    ("MODEL: [\n", "YAML syntax error"),
    ("MODEL:\n  NOT_A_KEY: 1\n", "unknown config key"),
    ("INPUT:\n  MIN_SIZE_TEST: large\n", "invalid config value"),
    ("MODEL:\n  META_ARCHITECTURE: NoSuchRCNN\n", "No object named 'NoSuchRCNN' found in 'META_ARCH' registry!; register it by importing your code with --import"),
])
def test_bad_configs_on_the_cli(tmp_path, capsys, tiny_weights, yaml_text, needle):
    cfg = tmp_path / "deploy.yaml"
    cfg.write_text(yaml_text)
    code, _, err = _run(capsys, "--config", cfg, "--weights", tiny_weights)
    assert code == 2 and needle in err and "deploy.yaml" in err and len(err.strip().splitlines()) == 1
