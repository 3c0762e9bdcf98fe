"""The images of an audit: a directory of image files or a COCO json, with COCO annotations when given.

Each image has a ``key`` (its path relative to the dataset root, stable when the whole set moves) and, when
annotated, its COCO ``image_id``; the order is fixed (by name, or by id for a json), so a resumed or sharded
audit assigns the same images the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..coco import load_coco
from ..errors import D2DebugError
from ..files import list_images
from ..serving import PathCheck

if TYPE_CHECKING:
    from pycocotools.coco import COCO

__all__ = ["AuditImage", "AuditDataset", "load_dataset"]


@dataclass(frozen=True)
class AuditImage:
    """One image: ``key`` is its path relative to the dataset root (stable across moves of the whole set)."""

    path: Path
    key: str
    image_id: Optional[int] = None


@dataclass(frozen=True)
class AuditDataset:
    """The images to audit, in order, and the COCO annotations (a pycocotools ``COCO``) if any."""

    images: tuple[AuditImage, ...]
    source: str
    annotations: Optional[Path] = None
    coco: Optional[COCO] = field(default=None, compare=False, repr=False)
    notes: tuple[str, ...] = ()


def _coco_or_error(path: Path):
    if not path.exists():
        raise D2DebugError(f"{path}: annotation file not found")
    if not path.is_file():
        raise D2DebugError(f"{path}: not a file (expected a COCO json)")
    try:
        return load_coco(path)
    except ValueError as exc:
        raise D2DebugError(str(exc)) from None


def load_dataset(images: str | Path, annotations: str | Path | None = None, limit: Optional[int] = None,
                 path_check: Optional[PathCheck] = None) -> AuditDataset:
    """The image list of an audit.

    ``images``: a directory (its image files, sorted by name, not recursive) or a COCO json (its images,
    by id, paths relative to the json; the json is also the annotations unless ``annotations`` is given).
    ``annotations``: a COCO json; images of a directory get their ids by relative path, else by file name.
    ``limit``: keep the first N images. ``path_check``: each image a COCO json names, and each file of the
    folder (a symlink may lead out of it), goes through it before it is read. Raises :class:`D2DebugError` naming the bad path.
    """
    images = Path(images).expanduser()
    if limit is not None and limit < 1:
        raise D2DebugError(f"--limit {limit}: must be at least 1")
    if not images.exists():
        raise D2DebugError(f"{images}: no such file or directory")
    notes: list[str] = []
    if images.is_file():
        if images.suffix.lower() != ".json":
            raise D2DebugError(f"{images}: --images must be a directory of images or a COCO json")
        listing = _coco_or_error(images)
        root = images.resolve().parent
        items = []
        if not listing.dataset["images"]:
            raise D2DebugError(f"{images}: lists no images")
        for img in sorted(listing.dataset["images"], key=lambda d: d["id"]):
            rel = str(img.get("file_name", ""))
            path = root / rel
            if path_check is not None and rel:
                path = path_check(path, f"image {rel!r} of {images.name}")
            if not rel or not path.is_file():
                raise D2DebugError(
                    f"{images}: image {rel!r} (id {img['id']}) not found at {path}; if the images live elsewhere, "
                    "pass --images IMAGE_DIR --annotations JSON"
                )
            items.append(AuditImage(path.resolve(), rel, int(img["id"])))
        ann_path = Path(annotations).expanduser() if annotations else images
        coco = listing if ann_path == images else _coco_or_error(ann_path)
        if ann_path != images:
            known = set(coco.getImgIds())
            missing = [i.key for i in items if i.image_id not in known]
            if missing:
                raise D2DebugError(f"{ann_path}: has no image with the ids of {len(missing)} image(s) of {images}")
        source = str(images)
    else:
        root = images.resolve()
        files = list_images(root, "directory")
        coco, ann_path = None, None
        ids: dict[str, int] = {}
        if annotations:
            ann_path = Path(annotations).expanduser()
            coco = _coco_or_error(ann_path)
            ann_root = ann_path.resolve().parent
            by_name: dict[str, list[int]] = {}
            for img in coco.dataset["images"]:
                rel = str(img.get("file_name", ""))
                ids[str((ann_root / rel).resolve())] = int(img["id"])
                by_name.setdefault(Path(rel).name, []).append(int(img["id"]))
            for name, v in by_name.items():
                if len(v) == 1:
                    ids.setdefault(name, v[0])
        items = []
        for p in files:
            if path_check is not None:
                p = path_check(p, f"image of {images.name}")
            image_id = ids.get(str(p.resolve()), ids.get(p.name))
            items.append(AuditImage(p.resolve(), p.name, image_id))
        unannotated = sum(1 for i in items if i.image_id is None)
        if ann_path is not None and unannotated == len(items):
            raise D2DebugError(f"{ann_path}: none of the {len(items)} images in {images} is listed in it")
        if unannotated and ann_path is not None:
            notes.append(f"{unannotated} image(s) not in {ann_path.name}: agreement only, left out of AP")
        source = str(images)
    if limit is not None:
        items = items[:limit]
    return AuditDataset(tuple(items), source, ann_path.resolve() if ann_path else None, coco, tuple(notes))
