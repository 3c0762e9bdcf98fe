"""A corpus of bad, unusual and hostile input files, generated here (no binary fixtures), shared by the CLI, AppTest
and browser tests: images the CLI and the dashboard must refuse in one line (``broken_corpus``) or convert and say
so (``convertible_corpus``), configs that are not detectron2 configs (``BAD_CONFIGS``), and a checkpoint whose
unpickling would write a file (``evil_pickle``: the proof that a loader ran code)."""
from __future__ import annotations

import io
import pickle
import struct
import zlib

import numpy as np
from PIL import Image

__all__ = ["broken_corpus", "convertible_corpus", "BAD_CONFIGS", "CreatesFile", "evil_pickle"]

# name -> (the file's text, what the one-line error must say)
BAD_CONFIGS = {
    "list.yaml": ("- a\n- b\n", "the top level is a list"),
    "scalar.yaml": ("hello\n", "the top level is a str"),
    "empty.yaml": ("# only a comment\n", "empty config"),
    "section.yaml": ("MODEL: 3\n", "section MODEL is a int"),
    "section_list.yaml": ("INPUT: [1, 2]\n", "section INPUT is a list"),
    "base_self.yaml": ("_BASE_: base_self.yaml\n", "form a cycle"),
    "base_int.yaml": ("_BASE_: 3\n", "_BASE_ is 3"),
    "base_missing.yaml": ("_BASE_: nowhere.yaml\n", "not found"),
    "base_list.yaml": ("_BASE_: list.yaml\n", "list.yaml: the top level is a list"),
}


class CreatesFile:
    """Unpickling this object creates a file: the proof that a loader ran code from a checkpoint."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def evil_pickle(marker) -> bytes:
    """A detectron2-shaped checkpoint (``{"model": {...}}``) whose unpickling creates the file ``marker``."""
    return pickle.dumps({"model": {"w": CreatesFile(marker)}})


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


def broken_corpus() -> dict[str, bytes]:
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


def convertible_corpus() -> dict[str, tuple[bytes, str]]:
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
