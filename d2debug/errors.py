"""The project's error type: a problem with the user's input, said in one line that names the bad value."""
from __future__ import annotations

__all__ = ["D2DebugError"]


class D2DebugError(ValueError):
    """An expected failure caused by input (a file, a value, a config). ``str(err)`` is the one line to show.

    The CLI prints it on stderr and exits non-zero; the dashboard shows it with ``st.error``. Anything else
    that escapes is a bug and keeps its traceback.
    """
