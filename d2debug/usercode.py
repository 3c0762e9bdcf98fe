"""The user's own code that registers their parts (a ROI head, backbone or meta-architecture) in detectron2's
registries, run before their model is built, as their training script ran it."""
from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Sequence

from .errors import D2DebugError, first_line

__all__ = ["import_user_code", "IMPORT_HINT"]

# The end of every "unregistered component" message: how to register it.
IMPORT_HINT = "register it by importing your code with --import MODULE_OR_FILE (dashboard: the sidebar's 'Your code' field)"

_IMPORTED: dict[str, ModuleType] = {}


def import_user_code(items: Sequence[str]) -> list[str]:
    """Run the user's code that registers their own parts (a ROI head, backbone or meta-architecture) before a
    model is built, as their training script did: each item is a module importable from the working directory
    (``my_project.modeling``) or a path to a ``.py`` file. This RUNS that code: callers pass only what the user
    named (``--import``; the dashboard's 'Your code' field with its tick). A file is run once per process
    (registering twice is an error in detectron2's registries). Returns the module names; an item that cannot
    be imported is one line naming it."""
    import importlib
    import importlib.util
    import sys

    done = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        path = Path(item).expanduser()
        if item.endswith(".py") or path.is_file():
            if not path.is_file():
                raise D2DebugError(f"{path}: --import file not found")
            key = str(path.resolve())
            if key not in _IMPORTED:
                name = f"d2debug_user_{len(_IMPORTED)}_{path.stem}"
                spec = importlib.util.spec_from_file_location(name, key)
                if spec is None or spec.loader is None:
                    raise D2DebugError(f"{path}: Python cannot import this file")
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                if str(path.resolve().parent) not in sys.path:
                    sys.path.insert(0, str(path.resolve().parent))  # its own imports work as when run as a script
                try:
                    spec.loader.exec_module(module)
                except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code may raise anything
                    sys.modules.pop(name, None)
                    raise D2DebugError(f"{path}: importing it raised {type(exc).__name__}: {first_line(exc)}") from None
                _IMPORTED[key] = module
            done.append(_IMPORTED[key].__name__)
            continue
        if str(Path.cwd()) not in sys.path and "" not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            done.append(importlib.import_module(item).__name__)
        except ModuleNotFoundError as exc:
            raise D2DebugError(f"{item}: no such module importable from {Path.cwd()} ({first_line(exc)})") from None
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code may raise anything
            raise D2DebugError(f"{item}: importing it raised {type(exc).__name__}: {first_line(exc)}") from None
    return done
