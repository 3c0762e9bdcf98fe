"""Who may run code and read files through the dashboard: the operator who starts the server decides, by the
address it listens on and by d2debug's own environment variables, never whoever opens the page.

- ``D2DEBUG_ALLOW_CODE``: ``1`` lets the code-running ticks ("Trust this checkpoint", "Trust this config", "Run
  this code", "Run my function") work on any address; ``0`` turns them off everywhere; unset: on only when the
  server listens on loopback alone.
- ``D2DEBUG_ALLOWED_DIRS``: folders (``os.pathsep``-separated, e.g. ``/data/models:/data/images``) under which
  typed paths are read, on any address; unset: any path on loopback, no typed path at all on another address.

The command line is run by its own user and is not governed by this (it reads what its user names).
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Union

from .errors import D2DebugError

__all__ = ["ALLOW_CODE_VAR", "ALLOWED_DIRS_VAR", "PathCheck", "ServingPolicy", "is_loopback", "serving_policy"]

ALLOW_CODE_VAR = "D2DEBUG_ALLOW_CODE"
ALLOWED_DIRS_VAR = "D2DEBUG_ALLOWED_DIRS"
# A path a file names (a config's _BASE_, a COCO json's image), checked before it is read: the path to read, or a
# D2DebugError in one line naming it and ``what`` names it. The library's loaders take one where the dashboard
# passes ServingPolicy.check_path (None: read as named).
PathCheck = Callable[[Path, str], Path]
_YES = {"1", "true", "yes", "on"}
_NO = {"0", "false", "no", "off"}


def is_loopback(address: Optional[str]) -> bool:
    """Whether a server listening on ``address`` (Streamlit's ``server.address``) is reachable from this machine
    only: ``localhost``, 127.0.0.0/8 or ``::1``. ``None``/empty is Streamlit's default, all interfaces (0.0.0.0,
    or ``::`` where IPv6 is available); a wildcard, a LAN address, any other host name and a ``unix://`` socket
    (a proxy may forward it anywhere) are not loopback. Names are not looked up: a name that resolves to
    127.0.0.1 other than ``localhost`` still counts as reachable from outside."""
    text = (address or "").strip().strip("[]").lower()
    if text in ("localhost", "localhost."):
        return True
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is IPv4 loopback
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


@dataclass(frozen=True)
class ServingPolicy:
    """What the dashboard lets its users do on this server.

    ``address``: what the server listens on, as configured (``""``: Streamlit's default, all interfaces).
    ``code_allowed``: whether the ticks that run the user's code (unpickling a checkpoint, loading a LazyConfig,
    importing their modules, calling their preprocessing function) may be used.
    ``allowed_dirs``: ``None``: any typed path is read (as on a personal workstation); a tuple: typed paths are
    read only under these resolved folders (an empty tuple: no typed path at all; uploads still work).
    """

    address: str
    code_allowed: bool
    allowed_dirs: Optional[tuple[Path, ...]]

    @property
    def loopback(self) -> bool:
        """Whether the server listens on loopback alone."""
        return is_loopback(self.address)

    def _where(self) -> str:
        return f"this server listens on {self.address or 'all interfaces (server.address unset)'}"

    def _code_off_because(self) -> str:
        # On loopback code is off only because the operator said so.
        return f"{ALLOW_CODE_VAR} is not 1 on this server" if self.loopback else self._where()

    def code_refusal(self) -> str:
        """The one line saying that code-running ticks are off and how the operator turns them on."""
        return (f"Running your code (pickle checkpoints, LazyConfig .py, your modules and functions) is off: "
                f"{self._code_off_because()}; the operator allows it by starting the dashboard with {ALLOW_CODE_VAR}=1")

    def require_code(self, what: str) -> None:
        """Raise :class:`D2DebugError` naming ``what`` (the tick, e.g. "Trust this checkpoint") and the variable
        unless code may run."""
        if not self.code_allowed:
            raise D2DebugError(f"{what}: refused. {self.code_refusal()}")

    def paths_note(self) -> str:
        """One line on which typed paths are read: any, only under the allowed folders, or none."""
        if self.allowed_dirs is None:
            return "Typed paths: any file this server can read."
        if not self.allowed_dirs:
            return (f"Typed paths are off ({self._where()}); the operator allows folders with "
                    f"{ALLOWED_DIRS_VAR}=/a/folder{os.pathsep}/another.")
        return (f"Typed paths: only under {', '.join(map(str, self.allowed_dirs))} ({ALLOWED_DIRS_VAR}, set by "
                "the operator).")

    def check_path(self, path: Union[str, Path], what: str = "path") -> Path:
        """The file or folder to read for the typed ``path``. Unrestricted: ``path`` with ``~`` expanded, as
        typed. Restricted: resolved (``~``, ``..`` and every symlink followed) and returned resolved, so what is
        read is what was checked; a path that lands outside every allowed folder raises :class:`D2DebugError` in
        one line naming it and how the operator allows more, whether or not it exists (the refusal does not say
        which files exist outside). ``what`` names the input in that line."""
        typed = str(path).strip()
        p = Path(typed).expanduser()
        if self.allowed_dirs is None:
            return p
        if not self.allowed_dirs:
            raise D2DebugError(f"{typed}: {what} refused. {self.paths_note()}")
        try:
            real = Path(os.path.realpath(p))  # follows symlinks and '..' as far as the path exists
        except (OSError, ValueError) as exc:
            raise D2DebugError(f"{typed}: {what} cannot be resolved ({exc})") from None
        if not any(real.is_relative_to(d) for d in self.allowed_dirs):
            raise D2DebugError(f"{typed}: {what} refused, outside the folders this server allows "
                               f"({', '.join(map(str, self.allowed_dirs))}); the operator adds folders to "
                               f"{ALLOWED_DIRS_VAR}")
        return real


def _flag(value: Optional[str]) -> Optional[bool]:
    """``D2DEBUG_ALLOW_CODE``'s meaning: True, False, or None (unset: the address decides). A value that is not
    a yes or a no counts as no: a typo must not open the door."""
    text = (value or "").strip().lower()
    if not text:
        return None
    return text in _YES if text in _YES | _NO else False


def _dirs(value: Optional[str]) -> Optional[tuple[Path, ...]]:
    """``D2DEBUG_ALLOWED_DIRS`` as resolved folders, or None when unset or empty."""
    parts = [s.strip() for s in (value or "").split(os.pathsep) if s.strip()]
    if not parts:
        return None
    return tuple(dict.fromkeys(Path(os.path.realpath(Path(s).expanduser())) for s in parts))


def serving_policy(address: Optional[str], environ: Optional[Mapping[str, str]] = None) -> ServingPolicy:
    """The policy for a server listening on ``address`` (Streamlit's ``server.address``; ``None``: unset) under
    the environment ``environ`` (default ``os.environ``): see the module's docstring for the variables."""
    env = os.environ if environ is None else environ
    loop = is_loopback(address)
    flag = _flag(env.get(ALLOW_CODE_VAR))
    dirs = _dirs(env.get(ALLOWED_DIRS_VAR))
    return ServingPolicy(address=(address or "").strip(), code_allowed=loop if flag is None else flag,
                         allowed_dirs=dirs if dirs is not None else (None if loop else ()))
