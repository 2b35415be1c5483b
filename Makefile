# Set-up and everyday commands. `make run` starts a working demo node; `make test` runs the suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
MLLP_PORT ?= 2575

.PHONY: install browser run test lint format lock worker clean bench-venv benchmark screenshots

$(INSTALLED): requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	touch $(INSTALLED)

install: $(INSTALLED)

run: install
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py seed_demo
	@echo ""
	@echo "HIE node: http://$(HOST):$(PORT)/console/   FHIR base: http://$(HOST):$(PORT)/fhir   health: http://$(HOST):$(PORT)/healthz"
	@echo "HL7 v2 over MLLP: $(HOST):$(MLLP_PORT)   (try: $(BIN)/mllp_send --loose -p $(MLLP_PORT) -f docs/samples/adt_a04.hl7 $(HOST))"
	@echo ""
	$(BIN)/python manage.py mllp_listen --host $(HOST) --port $(MLLP_PORT) & \
	  trap 'kill $$! 2>/dev/null' EXIT INT TERM; \
	  $(BIN)/python manage.py runserver $(HOST):$(PORT) --noreload

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The console's browser tests drive Debian's Chromium (Playwright never downloads a browser here).
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "Chromium is missing: sudo apt-get install chromium (browser tests are skipped without it)"; fi; }

test: install lint browser
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python -m pytest

# The README's console screenshots, from the demo data (docs/screenshots/).
screenshots: install browser
	$(BIN)/python docs/screenshots/take.py

# One worker with the periodic work embedded (-B: the audit chain check, the sweeps that restart
# work a lost task left waiting). More workers: start them with plain `celery -A hie worker`,
# keeping exactly one -B (or one `celery -A hie beat`).
worker: install
	$(BIN)/celery -A hie worker -B --schedule data/celerybeat-schedule --loglevel=INFO

# Benchmarks: Splink runs beside the node, as the reference, in a virtualenv of its own.
BENCH_VENV := .bench-venv
$(BENCH_VENV)/.installed: benchmarks/requirements-splink.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r benchmarks/requirements-splink.txt
	touch $@

# pseudopeople (the independent simulated population) pins its own pandas: a virtualenv of its own too.
PSEUDOPEOPLE_VENV := .pseudopeople-venv
$(PSEUDOPEOPLE_VENV)/.installed: benchmarks/requirements-pseudopeople.txt
	test -x $(PSEUDOPEOPLE_VENV)/bin/python || $(PYTHON) -m venv $(PSEUDOPEOPLE_VENV)
	$(PSEUDOPEOPLE_VENV)/bin/python -m pip install --quiet -r benchmarks/requirements-pseudopeople.txt
	touch $@

bench-venv: $(BENCH_VENV)/.installed $(PSEUDOPEOPLE_VENV)/.installed

benchmark: install bench-venv
	$(BIN)/python benchmarks/matching_accuracy.py

# Re-resolve the pins in requirements.lock from pyproject.toml (needs the package registry).
lock:
	rm -rf /tmp/hie-lock-venv
	$(PYTHON) -m venv /tmp/hie-lock-venv
	/tmp/hie-lock-venv/bin/python -m pip install --quiet --upgrade pip
	/tmp/hie-lock-venv/bin/python -m pip install --quiet '.[dev]'
	/tmp/hie-lock-venv/bin/python -m pip freeze --exclude hie-node > requirements.lock
	rm -rf /tmp/hie-lock-venv build *.egg-info

clean:
	rm -rf $(VENV) data/*.sqlite3* data/static
