"""The Doctor's accuracy suite: generated user pipelines with known pitfalls, diagnosed, and the confusion
table of true pitfall(s) vs the Doctor's top finding (``python -m d2debug doctor-suite``).

The cases are rendered with the library's own stage functions (``make_user_input``), so the suite checks
that the Doctor names each stage change it can render; hand-written pipelines (:mod:`.handwritten`) and
pipelines from the wild (:mod:`.wild`) are run by :func:`run_handwritten` and :func:`run_wild`, and the wild
suite's damage order is measured by :func:`measure_alone`.
"""
from __future__ import annotations

import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

from ..compare import compare
from ..compat import cfg_node
from ..doctor.diagnose import diagnose
from ..doctor.inputs import load_user_input, make_user_input, parse_user_input
from ..errors import D2DebugError
from ..run import preprocess, reference_spec, run_tensor
from ..stages import PipelineSpec
from . import handwritten, wild
from .handwritten import CASES

if TYPE_CHECKING:
    from detectron2.config import CfgNode

__all__ = ["run_handwritten", "run_wild", "measure_alone", "model_input", "agreement", "changes_input",
           "order_problems", "SuiteCase", "SuiteResult", "SUITE", "pick_images", "suite_cases", "run_case", "run_suite",
           "confusion_table"]


@dataclass(frozen=True)
class SuiteCase:
    """A generated user pipeline. ``finding_ids``: the ids (:data:`d2debug.findings.FINDING_IDS`) the Doctor
    should report for it (``()`` = the reference, which should give ``match``).

    ``spec``: stage changes for :class:`PipelineSpec`; ``container``/``dtype``: how the input is handed over;
    ``config``: config changes the user deploys with (``pixel_mean_std``); ``images``: which sample images
    (``exif`` = the EXIF-rotated ones, ``wide`` = ones where the MAX_SIZE clamp applies, ``all`` = the rest).
    """

    name: str
    finding_ids: tuple[str, ...]
    spec: dict = field(default_factory=dict)
    container: str = "dict"
    dtype: Optional[str] = None
    config: dict = field(default_factory=dict)
    images: str = "all"


_D2_DEFAULT = {"MODEL.PIXEL_MEAN": [103.53, 116.28, 123.675], "MODEL.PIXEL_STD": [1.0, 1.0, 1.0]}

SUITE: tuple[SuiteCase, ...] = (
    SuiteCase("reference", ()),
    SuiteCase("reference, list of dicts", (), container="list"),
    SuiteCase("reference, bare tensor (numpy.save)", (), container="tensor"),
    # single pitfalls
    SuiteCase("BGR fed to an RGB model", ("channel_order",), {"channel_order": "swapped"}),
    SuiteCase("ToTensor (0..1)", ("value_range_0_1",), {"value_range": "0_1"}),
    SuiteCase("ToTensor + Normalize(ImageNet)", ("external_normalization",), {"external_norm": "imagenet"}),
    SuiteCase("custom Normalize(0.5/0.25)", ("external_normalization",), {"external_norm": "custom:0.5,0.5,0.5/0.25,0.25,0.25"}),
    SuiteCase("Normalize with the model's own values", ("double_normalization",), {"external_norm": "half"}),
    SuiteCase("model-zoo PIXEL_MEAN/STD", ("pixel_mean_std",), config=_D2_DEFAULT),
    SuiteCase("fixed square resize", ("resize_aspect",), {"resize": "fixed"}),
    SuiteCase("fixed 640x480 resize", ("resize_aspect",), {"resize": "fixed", "resize_size": (640, 480)}),
    SuiteCase("no resize", ("resize_size",), {"resize": "none"}),
    SuiteCase("no MAX_SIZE clamp", ("resize_size",), {"resize": "shortest_edge_noclamp"}, images="wide"),
    SuiteCase("short side 800", ("resize_size",), {"resize_size": 800}, images="small"),
    SuiteCase("short side 256", ("resize_size",), {"resize_size": 256}),
    SuiteCase("cv2 INTER_LINEAR", ("resize_interpolation",), {"resize_backend": "cv2"}),
    SuiteCase("cv2 INTER_NEAREST", ("resize_interpolation",), {"resize_backend": "cv2", "interpolation": "nearest"}),
    SuiteCase("cv2 INTER_AREA", ("resize_interpolation",), {"resize_backend": "cv2", "interpolation": "area"}),
    SuiteCase("PIL nearest", ("resize_interpolation",), {"interpolation": "nearest"}),
    SuiteCase("PIL bicubic", ("resize_interpolation",), {"interpolation": "bicubic"}),
    SuiteCase("PIL lanczos", ("resize_interpolation",), {"interpolation": "lanczos"}),
    SuiteCase("F.interpolate bilinear", ("resize_interpolation",), {"resize_backend": "torch"}),
    SuiteCase("F.interpolate antialias", ("resize_interpolation",), {"resize_backend": "torch_antialias"}),
    SuiteCase("PIL open without exif_transpose", ("exif_orientation",), {"decoder": "pil"}, images="exif"),
    SuiteCase("no height/width", ("missing_original_size",), {"original_size": "omit"}),
    SuiteCase("uint8 tensor", ("dtype",), dtype="uint8"),
    SuiteCase("float64 tensor", ("dtype",), dtype="float64"),
    SuiteCase("4-D batch to model(x)", ("batch_contract",), container="batch"),
    # pairs
    SuiteCase("BGR + fixed square", ("channel_order", "resize_aspect"), {"channel_order": "swapped", "resize": "fixed"}),
    SuiteCase("ToTensor + cv2 resize", ("value_range_0_1", "resize_interpolation"), {"value_range": "0_1", "resize_backend": "cv2"}),
    SuiteCase("BGR + Normalize(ImageNet)", ("channel_order", "external_normalization"),
              {"channel_order": "swapped", "external_norm": "imagenet"}),
    SuiteCase("double normalization + no resize", ("double_normalization", "resize_size"), {"external_norm": "half", "resize": "none"}),
    SuiteCase("EXIF ignored + cv2 resize", ("exif_orientation", "resize_interpolation"),
              {"decoder": "pil", "resize_backend": "cv2"}, images="exif"),
    SuiteCase("EXIF ignored + BGR", ("exif_orientation", "channel_order"),
              {"decoder": "pil", "channel_order": "swapped"}, images="exif"),
    SuiteCase("no height/width + ToTensor", ("missing_original_size", "value_range_0_1"),
              {"original_size": "omit", "value_range": "0_1"}),
    SuiteCase("uint8 + fixed square", ("dtype", "resize_aspect"), {"resize": "fixed"}, dtype="uint8"),
    SuiteCase("4-D batch + BGR", ("batch_contract", "channel_order"), {"channel_order": "swapped"}, container="batch"),
    SuiteCase("Normalize(ImageNet) + no clamp", ("external_normalization", "resize_size"),
              {"external_norm": "imagenet", "resize": "shortest_edge_noclamp"}, images="wide"),
    SuiteCase("cv2 square resize", ("resize_aspect", "resize_interpolation"), {"resize": "fixed", "resize_backend": "cv2"}),
    SuiteCase("model-zoo config + BGR", ("pixel_mean_std", "channel_order"), {"channel_order": "swapped"}, config=_D2_DEFAULT),
    SuiteCase("float64 + Normalize(ImageNet)", ("dtype", "external_normalization"), {"external_norm": "imagenet"},
              dtype="float64"),
    SuiteCase("ToTensor + F.interpolate", ("value_range_0_1", "resize_interpolation"),
              {"value_range": "0_1", "resize_backend": "torch"}),
    SuiteCase("no resize + BGR", ("resize_size", "channel_order"), {"resize": "none", "channel_order": "swapped"}),
)


def pick_images(images: Sequence[Path], which: str, cfg: CfgNode, k: int, offset: int) -> list[Path]:
    from detectron2.data import transforms as T
    from PIL import Image

    mn, mx = int(cfg.INPUT.MIN_SIZE_TEST), int(cfg.INPUT.MAX_SIZE_TEST)

    def dims(p):
        with Image.open(p) as im:
            w, h = im.size
            if im.getexif().get(0x0112) in (5, 6, 7, 8):
                h, w = w, h
        return h, w

    exif = [p for p in images if "exif" in p.name]
    if which == "exif":
        pool = exif
    elif which == "wide":  # the clamp changes the size
        pool = [p for p in images if tuple(T.ResizeShortestEdge.get_output_shape(*dims(p), mn, 10 ** 9))
                != tuple(T.ResizeShortestEdge.get_output_shape(*dims(p), mn, mx))]
    elif which == "small":  # a larger short side is not clamped back to the reference size
        pool = [p for p in images if max(dims(p)) / min(dims(p)) < mx / mn * 0.95 and p not in exif]
    else:
        pool = [p for p in images if p not in exif]
    if not pool:
        return []
    return [pool[(offset + i * 7) % len(pool)] for i in range(min(k, len(pool)))]


def suite_cases(images: Sequence[Union[str, Path]], cfg: CfgNode, per_case: int = 2) -> list[tuple[SuiteCase, Path]]:
    """Every :data:`SUITE` pipeline on ``per_case`` of ``images`` (spread deterministically over the set)."""
    paths = [Path(p) for p in images]
    out = []
    for i, case in enumerate(SUITE):
        for p in pick_images(paths, case.images, cfg, per_case, offset=3 * i):
            out.append((case, p))
    return out


@dataclass(frozen=True)
class SuiteResult:
    """One case: ``truth`` the mistakes (``()``: a correct pipeline), ``top`` and ``found`` the Doctor's
    findings. ``leading``: the mistakes of which one must come first (the most damaging; several when they
    tie); empty for the generated suite, where any true pitfall on top counts."""

    case: str
    image: str
    truth: tuple[str, ...]
    top: str
    found: tuple[str, ...]
    leading: tuple[str, ...] = ()
    seconds: Optional[float] = None  # the diagnosis's wall time (the damage measurement included)
    forwards: Optional[int] = None  # model forward passes the damage measurement made

    @property
    def top_right(self) -> bool:
        if not self.truth:
            return self.top == "match"
        return self.top in (self.leading or self.truth)

    @property
    def blamed(self) -> tuple[str, ...]:
        """Findings naming a stage the pipeline does right."""
        return tuple(f for f in self.found if f not in self.truth and not (f == "match" and not self.truth))

    @property
    def all_right(self) -> bool:
        return set(self.found) == (set(self.truth) or {"match"})


def _user_config(cfg: CfgNode, changes: dict):
    if not changes:
        return cfg
    c = cfg.clone()
    c.defrost()
    for key, value in changes.items():
        node, leaf = cfg_node(c, key)
        node[leaf] = value
    c.freeze()
    return c


# The spec fields behind each tensor-level finding id (container, dtype and config ones always apply).
_FIELDS = {
    "channel_order": ("channel_order",),
    "value_range_0_1": ("value_range",),
    "external_normalization": ("external_norm",),
    "double_normalization": ("external_norm",),
    "resize_size": ("resize", "resize_size"),
    "resize_aspect": ("resize", "resize_size"),
    "resize_interpolation": ("interpolation", "resize_backend", "resize", "resize_size"),
    "exif_orientation": ("decoder",),
}


def _has_effect(cfg: CfgNode, image: Path, case: SuiteCase, finding_id: str) -> bool:
    """Whether the case's stage change behind ``finding_id`` changes the model input on this image at all (a
    channel swap on a grey image, or a clamp that does not apply, changes nothing: then it is no pitfall here)."""
    fields = _FIELDS.get(finding_id)
    if fields is None:
        return True
    only = {k: v for k, v in case.spec.items() if k in fields}
    ref, _ = preprocess(cfg, image)
    t, _ = preprocess(cfg, image, PipelineSpec(**only))
    if finding_id == "resize_interpolation":
        # the resampler's own effect: the same geometry with the reference resampler
        geo = {k: v for k, v in only.items() if k in ("resize", "resize_size")}
        ref, _ = preprocess(cfg, image, PipelineSpec(**geo))
    return not (tuple(t.shape) == tuple(ref.shape) and torch.equal(t, ref))


class _Deployed:
    """The user's deployment: their config with the trained weights."""

    def __init__(self, cfg: CfgNode, model):
        self.cfg, self.model = cfg, model


def run_case(loaded, case: SuiteCase, image: Path, tmpdir: Optional[Path] = None) -> SuiteResult:
    """Generate the case's user input on ``image`` (with the library's stage functions), save it like a user
    would (``torch.save`` / ``numpy.save``) when ``tmpdir`` is given, and diagnose it."""
    cfg = loaded.cfg
    spec = PipelineSpec(**case.spec)
    dtype = {"uint8": torch.uint8, "float64": torch.float64, None: None}[case.dtype]
    obj = make_user_input(cfg, image, spec, container=case.container, dtype=dtype)
    if tmpdir is not None:
        stem = f"{zlib.crc32((case.name + image.name).encode()):08x}"
        if case.container == "tensor" or (case.container == "batch" and zlib.crc32(image.name.encode()) % 2):
            path = Path(tmpdir) / f"{stem}.npy"
            np.save(path, obj.numpy())
        else:
            path = Path(tmpdir) / f"{stem}.pt"
            torch.save(obj, path)
        ui = load_user_input(path)
    else:
        ui = parse_user_input(obj)
    truth = tuple(f for f in case.finding_ids if _has_effect(cfg, image, case, f))
    deployed = _Deployed(_user_config(cfg, case.config), loaded.model)
    t0 = time.perf_counter()
    diag = diagnose(deployed, image, ui)
    seconds = time.perf_counter() - t0
    return SuiteResult(case.name, image.name, truth, diag.top, tuple(diag.ids), seconds=seconds,
                       forwards=_forwards(diag.analysis))


def run_suite(loaded, images: Sequence[Union[str, Path]], per_case: int = 2, tmpdir: Optional[Path] = None,
              progress: Optional[Callable[[int, int, SuiteResult], None]] = None) -> list[SuiteResult]:
    """Run the accuracy suite; ``progress(i, n, result)`` is called after each case."""
    cases = suite_cases(images, loaded.cfg, per_case)
    results = []
    for i, (case, img) in enumerate(cases, 1):
        r = run_case(loaded, case, img, tmpdir)
        results.append(r)
        if progress is not None:
            progress(i, len(cases), r)
    return results


def _run_cases(loaded, cases: Sequence[Union[handwritten.Case, wild.Case]], images_dir: Union[str, Path],
               progress: Optional[Callable[[int, int, SuiteResult], None]]) -> list[SuiteResult]:
    """Diagnose each written case on its sample image. An input the Doctor refuses (``D2DebugError``: one it
    cannot read as a model input at all) is the result ``error``, a wrong answer in the table."""
    results = []
    for i, case in enumerate(cases, 1):
        path = Path(images_dir) / case.image
        seconds: Optional[float] = None
        forwards: Optional[int] = None
        try:
            user = parse_user_input(case.fn(str(path)), case.name)
            t0 = time.perf_counter()
            diag = diagnose(loaded, path, user)
            seconds = time.perf_counter() - t0
            forwards = _forwards(diag.analysis)
            top, found = diag.top, tuple(diag.ids)
        except D2DebugError:
            top, found = "error", ("error",)
        r = SuiteResult(case.name, case.image, tuple(case.mistakes), top, found, tuple(case.mistakes[:case.tied]),
                        seconds, forwards)
        results.append(r)
        if progress is not None:
            progress(i, len(cases), r)
    return results


def _forwards(analysis: dict) -> int:
    """Forward passes the damage measurement made: the reference, the input as given and as run, and each
    finding fixed alone and present alone (one per score recorded besides the two runs)."""
    scores = analysis.get("damage_scores")
    return 0 if not scores else 1 + len(scores)


def run_handwritten(loaded, images_dir: Union[str, Path],
                    progress: Optional[Callable[[int, int, SuiteResult], None]] = None) -> list[SuiteResult]:
    """The hand-written suite (:mod:`.handwritten`: pipelines written like real scripts, not with the Doctor's
    stage functions) on the demo model's sample images in ``images_dir``."""
    return _run_cases(loaded, CASES, images_dir, progress)


def run_wild(loaded, images_dir: Union[str, Path], progress: Optional[Callable[[int, int, SuiteResult], None]] = None,
             cases: Optional[Sequence[wild.Case]] = None) -> list[SuiteResult]:
    """The suite of pipelines from the wild (:mod:`.wild`: crops, padding modes, decoders, size rules, tensor
    layouts, transforms with no finding id, code from public issues) on the demo model's sample images in
    ``images_dir``; ``cases``: a subset (default all)."""
    return _run_cases(loaded, wild.CASES if cases is None else cases, images_dir, progress)


def model_input(obj: Any) -> tuple[Any, Optional[tuple[int, int]]]:
    """What the model gets from a script's return value (a dict, a list of dicts, a tensor or an array): the
    (first) image as given, a numpy array as the tensor it becomes, and the height/width passed (``None``:
    not passed)."""
    if isinstance(obj, (list, tuple)):
        obj = obj[0]
    size = None
    if isinstance(obj, dict):
        if "height" in obj and "width" in obj:
            size = (int(obj["height"]), int(obj["width"]))
        obj = obj["image"]
    if isinstance(obj, np.ndarray):
        obj = torch.from_numpy(np.ascontiguousarray(obj))
    return obj, size


def agreement(loaded, reference, obj: Any) -> float:
    """Agreement (``compare(...).score``: detection F1, mIoU for a semantic segmentor) of the model's output on
    what a script returns (``obj``) with ``reference``, the model's output on the reference input. The image
    runs as given, its dtype included; an input the model cannot run (a 4-D batch, an ``HxWx3`` tensor, a
    float64 tensor against float32 weights) scores 0."""
    image, size = model_input(obj)
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        return 0.0  # detectron2 stacks a 1xCxHxW "image" into a 5-D batch; an HxWxC one fails PIXEL_MEAN
    spec = reference_spec(loaded.cfg, loaded.device).replace(original_size="pass" if size else "omit")
    try:
        out = run_tensor(loaded, image, spec, original_size=size)
    except (RuntimeError, D2DebugError):
        return 0.0
    return float(compare(reference, out).score)


def measure_alone(loaded, images_dir: Union[str, Path],
                  cases: Optional[Sequence[wild.Case]] = None) -> dict[str, dict[str, float]]:
    """For every wild case with two or more mistakes: the agreement of the model's output on each mistake's
    ``alone`` pipeline (the correct pipeline with only that mistake) with its output on the reference input
    (``DefaultPredictor``'s), ``{case name: {finding id: agreement}}``. Lower is more damaging."""
    out: dict[str, dict[str, float]] = {}
    spec = reference_spec(loaded.cfg, loaded.device)
    for case in wild.CASES if cases is None else cases:
        if len(case.mistakes) < 2:
            continue
        path = Path(images_dir) / case.image
        tensor, original = preprocess(loaded.cfg, path)
        reference = run_tensor(loaded, tensor, spec, original_size=original)
        out[case.name] = {m: round(agreement(loaded, reference, case.alone[m](str(path))), 4) for m in case.mistakes}
    return out


def changes_input(obj: Any, reference: torch.Tensor, original: tuple[int, int], tol: float = 0.0) -> bool:
    """Whether what a script returns differs from the reference model input (``reference``: ``3xHxW`` float32,
    ``original``: the height/width to pass): another container shape, dtype, height/width, size, or values
    whose mean absolute difference exceeds ``tol`` grey levels (0: any difference). No height/width is read as
    the model reads it, the input's own size (what it then answers in): no change for an input at the original
    size."""
    image, size = model_input(obj)
    if not isinstance(image, torch.Tensor) or image.dtype != torch.float32:
        return True
    if size is None and image.dim() == 3:
        size = (int(image.shape[1]), int(image.shape[2]))
    if size != tuple(original):
        return True
    if tuple(image.shape) != tuple(reference.shape):
        return True
    return float((image - reference).abs().mean()) > tol


def order_problems(case: wild.Case, measured: dict[str, float], tol: float = 0.02) -> list[str]:
    """What is wrong with ``case``'s declared damage order given the measured alone-agreements: the mistakes
    must be listed lowest agreement first (within ``tol``), the first ``case.tied`` within ``tol`` of each
    other and no later one within ``tol`` of the lowest."""
    a = [measured[m] for m in case.mistakes]
    lead, rest = a[:case.tied], a[case.tied:]
    problems = []
    for i in range(1, len(a)):
        if a[i] + tol < a[i - 1]:
            problems.append(f"{case.mistakes[i]} ({a[i]}) is more damaging than {case.mistakes[i - 1]} ({a[i - 1]})")
    if max(lead) - min(lead) > tol:
        problems.append(f"the {case.tied} leading mistakes do not tie: {dict(zip(case.mistakes, lead))}")
    for m, v in zip(case.mistakes[case.tied:], rest):
        if v <= min(a) + tol:
            problems.append(f"{m} ({v}) ties with the most damaging ({min(a)}): tied should count it")
    return problems


def confusion_table(results: Sequence[SuiteResult]) -> str:
    """A plain-text confusion table: true pitfall(s) (rows) vs the Doctor's top finding (columns), plus the
    top-1 accuracy, exact-set accuracy and the reference's match rate."""
    def label(r):
        truth = r.leading or r.truth
        return " / ".join(truth) if r.leading else (" + ".join(truth) if truth else "match (reference)")

    rows = sorted({label(r) for r in results}, key=lambda s: (s.count("+"), s))
    cols = sorted({r.top for r in results})
    counts = Counter((label(r), r.top) for r in results)
    w0 = max(len(s) for s in rows + ["true pitfall(s)"])
    abbrev = {c: c.replace("_normalization", "_norm").replace("resize_", "rs_") for c in cols}
    widths = {c: max(len(abbrev[c]), 3) for c in cols}
    lines = ["true pitfall(s)".ljust(w0) + " | " + " ".join(abbrev[c].rjust(widths[c]) for c in cols) + " | top ok"]
    lines.append("-" * len(lines[0]))
    for row in rows:
        mine = [r for r in results if label(r) == row]
        ok = sum(r.top_right for r in mine)
        cells = " ".join((str(counts[(row, c)]) if counts[(row, c)] else ".").rjust(widths[c]) for c in cols)
        lines.append(f"{row.ljust(w0)} | {cells} | {ok}/{len(mine)}")
    n = len(results)
    top = sum(r.top_right for r in results)
    exact = sum(r.all_right for r in results)
    refs = [r for r in results if not r.truth]
    pipelines = len({r.case for r in results})
    lines.append("-" * len(lines[0]))
    blamed = [r for r in results if r.blamed]
    lines.append(f"{n} cases ({pipelines} pipelines): top finding right {top}/{n} = {top / max(n, 1):.1%}; "
                 f"all findings exactly right {exact}/{n} = {exact / max(n, 1):.1%}; "
                 f"reference -> match {sum(r.top == 'match' for r in refs)}/{len(refs)}; "
                 f"a right stage blamed in {len(blamed)}/{n}")
    timed = sorted(r.seconds for r in results if r.seconds is not None)
    if timed:
        passes = sorted(r.forwards for r in results if r.forwards is not None)
        most = passes[-1] if passes else 0
        how = (f"damage measured with the model: forward passes median {passes[len(passes) // 2]}, max {most}"
               if most else "no damage measurement: the pixels' explanation only")
        lines.append(f"cost per diagnosis: median {timed[len(timed) // 2]:.2f} s, max {timed[-1]:.2f} s ({how})")
    if any(r.leading for r in results):
        lines.append("(rows: the most damaging mistake of each pipeline, a / b when they tie; the Doctor's top "
                     "finding must be it)")
    for r in results:
        if not r.top_right:
            lines.append(f"WRONG: {r.case} on {r.image}: truth {' + '.join(r.truth) or 'match'}, found "
                         f"{', '.join(r.found) or 'nothing'}")
    for r in blamed:
        lines.append(f"BLAMED: {r.case} on {r.image}: {', '.join(r.blamed)} (truth {' + '.join(r.truth) or 'match'})")
    return "\n".join(lines)
