# The two commands of the README:
#   make demo   set up what pretraining needs (no mmcv/mmseg/detectron2), then pretrain R2O on the demo scenes
#   make test   set everything up, then run the test suite (what CI runs)
PY := .venv/bin/python

.PHONY: setup setup-pretrain demo test test-quick lint bench lock clean-cache

setup:
	bash scripts/setup.sh

# torch, torchvision, requirements/pretrain.txt and r2o only; `make setup` later adds the rest
setup-pretrain:
	bash scripts/setup.sh --pretrain-only

demo: setup-pretrain
	$(PY) tools/pretrain.py

# two pytest-xdist workers (one per core); --dist loadfile keeps a module's tests (and fixtures) together
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15 tests

# the edit-test loop: unit tests only (no end-to-end training runs), under 90 s; needs a set-up .venv
test-quick:
	@test -x $(PY) || { echo "run 'make setup' first"; exit 1; }
	$(PY) -m pytest -q -n 2 -m "not e2e" --durations=5 tests

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: setup
	$(PY) benchmarks/run.py
	$(PY) benchmarks/profile_step.py

# Rewrite requirements/stack.txt from the current venv (after changing a top-level pin on purpose).
lock:
	$(PY) -m pip freeze --exclude-editable | grep -v -E '^(torch|torchvision|triton|nvidia-|cuda-|mmcv|openmim|cityscapesScripts|pytest|ruff|iniconfig|pluggy|ninja|pb1-detectron2|detectron2)[=@ ]' > requirements/stack.lock.new
	@echo "review requirements/stack.lock.new, then move it over requirements/stack.txt"

clean-cache:
	rm -rf $${R2O_CACHE_DIR:-$$HOME/.cache/r2o}/wheels
