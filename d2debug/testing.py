"""Test helpers: check a user's own preprocessing against the reference pipeline, inside their test suite.

    from d2debug.testing import assert_matches_reference

    def test_my_preprocessing():
        assert_matches_reference(my_preprocess, "output/config.yaml", ["val/img1.jpg", "val/img2.jpg"])

``my_preprocess(path)`` returns what the user's code feeds the model for that image (a Detectron2 input dict,
a list of them, or a 3xHxW tensor). The assertion fails with the Pipeline Doctor's findings (evidence and fix)
for every image whose input differs from what ``DefaultPredictor`` would feed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from .config import load_cfg
from .doctor import Diagnosis, diagnose, load_fingerprint, parse_user_input
from .errors import D2DebugError

__all__ = ["assert_matches_reference"]


def _resolve_reference(cfg_or_loaded) -> tuple[Any, Optional[dict]]:
    """(model-or-cfg, fingerprint) from a LoadedModel, CfgNode, config.yaml path, fingerprint .json or dict."""
    if isinstance(cfg_or_loaded, (str, Path)):
        p = Path(cfg_or_loaded)
        if p.suffix.lower() == ".json":
            return None, load_fingerprint(p)
        return load_cfg(p), None
    if isinstance(cfg_or_loaded, dict) and "d2debug_fingerprint" in cfg_or_loaded:  # (a CfgNode is a dict too)
        return None, load_fingerprint(cfg_or_loaded)
    return cfg_or_loaded, None


def assert_matches_reference(
    preprocess_fn: Callable[[str], Any],
    cfg_or_loaded,
    image_paths: Sequence[Union[str, Path]],
) -> list[Diagnosis]:
    """Assert that ``preprocess_fn(path)`` feeds the model exactly what the reference pipeline feeds.

    ``cfg_or_loaded``: a detectron2 ``CfgNode``, a :class:`~d2debug.model.LoadedModel` (also checks the
    config's PIXEL_MEAN/STD against the weights), a path to the training ``config.yaml``, or a pipeline
    fingerprint (``.json`` path or dict). Raises ``AssertionError`` listing, per failing image, the Doctor's
    findings with evidence and fix. Returns the diagnoses when everything matches.
    """
    __tracebackhide__ = True  # pytest: show the message, not this frame
    if not image_paths:
        raise ValueError("image_paths is empty: give at least one image to check")
    ref, fp = _resolve_reference(cfg_or_loaded)
    failures: list[str] = []
    diagnoses = []
    for p in image_paths:
        name = Path(p).name
        try:
            obj = preprocess_fn(str(p))
            diag = diagnose(ref, p, parse_user_input(obj, f"preprocess_fn({name!r})"), fingerprint=fp)
        except D2DebugError as exc:
            failures.append(f"{name}: {exc}")
            continue
        diagnoses.append(diag)
        if not diag.is_match:
            lines = [f"{name}: " + (", ".join(diag.ids) or "differs from the reference (unexplained)")]
            for f in diag.findings:  # most damaging first (measured with the model when one is given)
                damage = "" if f.recovers is None else f", fixing it alone recovers {f.recovers:+.3f} F1"
                lines.append(f"  - {f.id} (confidence {f.confidence:.2f}{damage}): {f.evidence}")
                lines.append(f"    fix: {f.fix}")
            lines += [f"  note: {n}" for n in diag.notes]
            failures.append("\n".join(lines))
    if failures:
        raise AssertionError(
            f"{len(failures)} of {len(image_paths)} image(s) are not preprocessed like the reference pipeline "
            "(DefaultPredictor):\n" + "\n".join(failures)
        )
    return diagnoses
