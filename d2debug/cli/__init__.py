"""``python -m d2debug``: the command line. Every subcommand has ``--json`` for machines.

Expected failures (a missing file, a bad ``--set``, an unreadable image, a bad config) print ONE line on stderr
naming the bad value and exit 2; ``--debug`` shows the traceback instead. Each subcommand module has
``register(subparsers)``, which adds its parser and sets ``func`` (the parsed args -> the exit code).
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from ..compat import silence_library_noise
from ..errors import D2DebugError
from . import audit, bench, compare, config_diff, deploy, doctor
from .common import add_model_args, load_from_args

__all__ = ["main", "build_parser", "load_from_args", "add_model_args"]

# In the order `--help` lists them.
SUBCOMMANDS = (compare, doctor, audit, config_diff, deploy, bench)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m d2debug",
        description="Find where your Detectron2 inference preprocessing differs from the reference pipeline.",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="cmd", required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    silence_library_noise()
    parser = build_parser()
    a = parser.parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)  # as given: --nproc starts this same command again
    try:
        return a.func(a)
    except D2DebugError as exc:
        if a.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away; nothing left to say.
        sys.stderr.close()
        return 0
