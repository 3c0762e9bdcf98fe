"""The project's error type: a problem with the user's input, said in one line that names the bad value."""
from __future__ import annotations

from typing import Union

__all__ = ["D2DebugError", "first_line"]


class D2DebugError(ValueError):
    """An expected failure caused by input (a file, a value, a config). ``str(err)`` is the one line to show.

    The CLI prints it on stderr and exits non-zero; the dashboard shows it with ``st.error``. Anything else
    that escapes is a bug and keeps its traceback.
    """


def first_line(exc: Union[BaseException, str], limit: int = 200) -> str:
    """The first non-empty line of ``str(exc)``, at most ``limit`` characters; the exception's type name when
    its message is empty (some libraries raise with no text, and an error line must still say something)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return "no details" if isinstance(exc, str) else type(exc).__name__
