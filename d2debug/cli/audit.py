"""``python -m d2debug audit``: the reference and every single-stage pitfall over a dataset; under torchrun
(or with ``--nproc N``, which starts torchrun's launcher) sharded over the processes."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from pathlib import Path

from ..errors import D2DebugError
from ..pitfalls import STANDARD_PITFALLS
from .common import add_model_args, load_from_args
from .deploy import add_deployed_args, deployed_from_args

__all__ = ["register", "cmd_audit"]

DEFAULT_OUT = Path("d2debug_audit")
DEFAULT_WORKERS = 1


def register(sub) -> None:
    p = sub.add_parser(
        "audit",
        help="run the reference and every preprocessing pitfall over a dataset; AP, agreement, HTML report",
        description=(
            "Runs the reference pipeline (exactly DefaultPredictor) and each pitfall variant on every image; "
            "measures agreement with the reference and, with COCO annotations, AP per variant (pycocotools). "
            "Results are appended per image to OUT/results.jsonl: rerun the same command to resume an "
            "interrupted audit. Writes OUT/summary.json, OUT/pitfalls.md and OUT/report.html. "
            "On several GPUs or machines: torchrun --nproc-per-node N [--nnodes M --rdzv-backend c10d "
            "--rdzv-endpoint HOST:PORT] -m d2debug audit ... (each rank writes OUT/results.rank<R>.jsonl; "
            "rank 0 merges them), or --nproc N on this machine."
        ),
    )
    add_model_args(p)
    add_deployed_args(p, own_preprocess=False)
    p.add_argument("--images", type=Path, required=True,
                   help="a directory of images, or a COCO json (its images; also the annotations)")
    p.add_argument("--annotations", type=Path, help="COCO json with ground truth, for AP")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default: ./{DEFAULT_OUT})")
    p.add_argument(
        "--variants", nargs="+", metavar="NAME",
        help="pitfalls to run (default: all): " + ", ".join(x.name for x in STANDARD_PITFALLS)
        + "; or a custom NAME:KEY=VALUE+KEY=VALUE",
    )
    p.add_argument("--limit", type=int, help="audit only the first N images")
    p.add_argument("--restart", action="store_true",
                   help="set an existing results file with other settings aside and start again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true", help="print summary.json to stdout")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="run N processes on this machine (one per GPU; on a CPU machine N processes sharing its "
                        "cores) through torch's launcher, like torchrun --standalone --nproc-per-node N")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS, metavar="W",
                   help="DataLoader worker processes per rank decoding and preprocessing ahead of the model "
                        f"(default: {DEFAULT_WORKERS}; 0: in the main process)")
    p.add_argument("--batch", action=argparse.BooleanOptionalAction, default=None,
                   help="one batched forward pass for the pitfalls whose inputs share a shape (default: on a GPU)")
    p.set_defaults(func=cmd_audit)


def _on_sigterm(_signum, _frame):
    # Finished images are already on disk; stop like Ctrl-C so the user gets the resume hint.
    raise KeyboardInterrupt


def cmd_audit(a: argparse.Namespace) -> int:
    from ..audit import SharedError, start_ranks

    if a.nproc is not None:
        return _launch(a)
    if a.workers < 0:
        raise D2DebugError(f"--workers {a.workers}: must be 0 or more")
    ranks = start_ranks(a.device)
    if not ranks.sharded:
        return _audit(a, ranks)
    code = 1
    try:
        code = _audit(a, ranks)
    except D2DebugError as exc:
        code = 2
        if a.debug:
            traceback.print_exc()
        elif getattr(exc, "rank", 0) == 0 or not isinstance(exc, SharedError):
            print(f"error: {exc}", file=sys.stderr)  # a shared error: every rank has it, rank 0 says it
    except BaseException:
        traceback.print_exc()
    finally:
        # Leave without tearing the process group down: torch 2.3's gloo group can deadlock in its destructor
        # when a worker thread still holds a collective's tensors (pytorch/pytorch#56297). Every result is
        # already fsynced or renamed into place.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _audit(a: argparse.Namespace, ranks) -> int:
    from ..audit import load_dataset, parse_variants, pitfalls_markdown, run_audit

    def load():
        pitfalls = parse_variants(a.variants)  # bad names fail before the model loads
        dataset, loaded = load_dataset(a.images, a.annotations, a.limit), load_from_args(a)
        return pitfalls, dataset, loaded, deployed_from_args(a, loaded)

    pitfalls, dataset, loaded, deployed = ranks.agree(load)  # under torchrun: a bad file is one line, from rank 0
    bar = None
    state = {"done": 0, "total": len(dataset.images)}

    def progress(done, total, item):
        nonlocal bar
        state["done"] = done
        if a.no_progress:
            return
        if bar is None:
            from tqdm import tqdm

            where = f", {ranks.world_size} ranks" if ranks.sharded else ""
            bar = tqdm(total=total, initial=done, unit="img", file=sys.stderr, dynamic_ncols=True,
                       desc=f"audit ({1 + len(pitfalls)} pipelines/img{where})")
        else:
            bar.update(done - bar.n)
            if item is not None:
                bar.set_postfix_str(item.key[-32:], refresh=False)

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        audit = run_audit(loaded, dataset, a.out, pitfalls, restart=a.restart,
                          progress=progress if ranks.is_main else None, ranks=ranks, workers=a.workers,
                          batch=a.batch, deployed=deployed)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        where = "in " + ", ".join(str(p) for p in _shards(a.out)) if ranks.sharded else \
            f"{state['done']} of {state['total']} images are saved in {Path(a.out) / 'results.jsonl'}"
        print(f"interrupted: {'finished images are saved ' if ranks.sharded else ''}{where}; rerun the same "
              "command to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if bar is not None:
            bar.close()
    if audit.summary is None:
        return 0  # another rank: rank 0 reports
    for path in audit.set_aside:
        print(f"previous results set aside as {path}", file=sys.stderr)
    if audit.dropped_tail:
        print("dropped a torn last line from an interrupted run (that image is computed again)", file=sys.stderr)
    if a.json:
        print(json.dumps(audit.summary, indent=1))
        return 0
    ranks_text = f" on {ranks.world_size} ranks" if ranks.sharded else ""
    print(f"resumed {audit.resumed} image(s), computed {audit.computed}{ranks_text}")
    print(pitfalls_markdown(audit.summary))
    for k in ("summary", "markdown", "report"):
        print(f"{k:9s} {audit.outputs[k]}")
    print(f"{'results':9s} " + ", ".join(str(p) for p in audit.shards))
    return 0


def _shards(out: Path) -> list[Path]:
    from ..audit import results_files

    return results_files(out) or [Path(out) / "results.jsonl"]


def _launch(a: argparse.Namespace) -> int:
    """``--nproc N``: this same command, without ``--nproc``, in N processes started by torch's launcher
    (``torch.distributed.run``, as ``torchrun --standalone --nproc-per-node N``)."""
    from ..audit import launched_by_torchrun

    if launched_by_torchrun():
        raise D2DebugError("--nproc: this process was already started by torchrun; leave --nproc out")
    if a.nproc < 1:
        raise D2DebugError(f"--nproc {a.nproc}: must be at least 1")
    argv = list(a.argv)
    i = argv.index("audit")
    rest = []
    skip = False
    for arg in argv[i + 1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # The launcher's own log lines (its rendezvous banner, a failed rank's report) repeat what the ranks said;
    # torch sets each of its loggers' level itself, so each is quietened.
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("torch.distributed")]:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // a.nproc)))
    launch = get_args_parser().parse_args(["--standalone", "--nproc-per-node", str(a.nproc), "--module", "d2debug",
                                           *argv[:i], "audit", *rest])
    try:
        run(launch)
    except SignalException:
        # Ctrl-C or SIGTERM: the launcher stopped the ranks, which said what they saved.
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except ChildFailedError as exc:
        codes = sorted({f.exitcode for f in exc.failures.values()})
        if codes and all(c in (130, -signal.SIGTERM) for c in codes):
            return 130  # interrupted: each rank said what is saved
        if codes == [2]:
            return 2  # an expected error: rank 0 printed its one line
        print(f"error: {len(exc.failures)} of {a.nproc} audit processes failed (exit code "
              f"{', '.join(str(c) for c in codes)}); their messages are above", file=sys.stderr)
        return max(2, max(codes)) if codes else 2
    return 0
