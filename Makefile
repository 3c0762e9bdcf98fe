# The two commands: `make run` (the dashboard on localhost) and `make test` (the linter, then the whole suite).
# Both set up the venv of a tested stack first; set-up is a no-op when nothing changed.
#   STACK=default (the default): .venv, Python 3.10 and the pinned stack (requirements*.txt)
#   STACK=modern: .venv-modern, Python 3.12, the newest torch, numpy 2, detectron2 built from source (stacks/modern.txt)
STACK ?= default
VENV := $(if $(filter modern,$(STACK)),.venv-modern,.venv)
PY := $(VENV)/bin/python
PORT ?= 8501

.PHONY: setup run test bench clean-venv

setup:
	@bash scripts/setup_venv.sh $(STACK)

run: setup
	$(PY) -m streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT)

test: setup
	@bash scripts/ensure_chromium.sh
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -q -ra tests

bench: setup
	$(PY) -m d2debug bench

clean-venv:
	rm -rf .venv .venv-modern
