#!/usr/bin/env bash
# Create .venv with Python 3.10 (the only Python sal-detectron2 ships a wheel for) and install the pinned
# requirements. Idempotent: does nothing when the venv is current (a stamp holds the requirements' hash).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP=$VENV/.d2debug-requirements.sha256
want_hash=$(cat requirements-torch.txt requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)

is_py310() { [ -x "$1" ] && "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' 2>/dev/null; }

find_py310() {
  local c
  for c in "$(command -v python3.10 2>/dev/null || true)"; do is_py310 "$c" && { echo "$c"; return; }; done
  if command -v pyenv >/dev/null 2>&1; then
    for c in "$(pyenv root)"/versions/3.10*/bin/python3.10; do is_py310 "$c" && { echo "$c"; return; }; done
  fi
  for c in "$HOME"/.pyenv/versions/3.10*/bin/python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10 \
           "$HOME"/.local/share/uv/python/cpython-3.10*/bin/python3.10; do
    is_py310 "$c" && { echo "$c"; return; }
  done
  if command -v uv >/dev/null 2>&1; then
    c=$(uv python find 3.10 2>/dev/null || true)
    is_py310 "$c" && { echo "$c"; return; }
  fi
  return 1
}

if is_py310 "$VENV/bin/python" && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_hash" ]; then
  exit 0
fi
if ! is_py310 "$VENV/bin/python"; then
  py=$(find_py310) || {
    echo "error: Python 3.10 not found (detectron2's registry build sal-detectron2 ships only a CPython 3.10 wheel); install it, e.g. 'pyenv install 3.10.13' or 'uv python install 3.10', then run make again" >&2
    exit 1
  }
  echo "setup: creating $VENV with $py"
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
fi
echo "setup: installing pinned requirements into $VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24,<26"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-torch.txt -r requirements.txt
"$VENV/bin/python" -c 'from detectron2 import _C' || { echo "error: detectron2's compiled ops do not load in $VENV" >&2; exit 1; }
echo "$want_hash" > "$STAMP"
echo "setup: done"
