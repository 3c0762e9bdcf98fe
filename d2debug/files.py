"""Files the user points at: a readable file, which suffixes are images, listing a folder of them, and content
hashes.

One list of image suffixes serves the sidebar's uploader, folder browsing, the audit, the fingerprint and the
benchmark, so a format accepted in one place is accepted everywhere (Pillow decodes all of them).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Union

from .errors import D2DebugError

__all__ = ["readable_file", "IMAGE_SUFFIXES", "is_image_file", "list_images", "sha256_file", "sha256_text"]

# Lower-case, with the dot. GIF: the first frame is used (``stages.decode`` says so in its notes).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


def readable_file(path: Union[str, Path], what: str) -> Path:
    """``path`` resolved, once it is known to be a file this process can open; else :class:`D2DebugError` in
    one line naming it and saying whether it is missing, a directory or unreadable. ``what`` names the file in
    messages (``config``, ``weights``)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise D2DebugError(f"{path}: {what} not found")
    if path.is_dir():
        raise D2DebugError(f"{path}: is a directory, expected a {what} file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise D2DebugError(f"{path}: cannot read {what} ({exc.strerror})") from None
    return path.resolve()


def is_image_file(path: Path) -> bool:
    """``path`` is a regular file whose suffix is one of :data:`IMAGE_SUFFIXES` (case-insensitive)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def list_images(folder: Union[str, Path], what: str = "folder") -> list[Path]:
    """Image files (by suffix) directly in ``folder``, sorted by name, not recursive. Raises
    :class:`D2DebugError` naming the folder when it does not exist, is not a folder, or holds no images.
    ``what`` names the folder in messages (``folder``, ``directory``)."""
    path = Path(str(folder)).expanduser()
    if not path.exists():
        raise D2DebugError(f"{path}: no such {what}")
    if not path.is_dir():
        raise D2DebugError(f"{path}: not a {what}")
    try:
        files = sorted(p for p in path.iterdir() if is_image_file(p))
    except OSError as exc:
        raise D2DebugError(f"{path}: cannot list {what} ({exc.strerror})") from None
    if not files:
        raise D2DebugError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this {what}")
    return files


def sha256_file(path: Union[str, Path]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks (checkpoints are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    """Hex SHA-256 of a string's UTF-8 bytes."""
    return hashlib.sha256(text.encode()).hexdigest()
