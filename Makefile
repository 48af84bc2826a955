# Two commands: `make demo` runs the shop, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
MANAGE := $(PY) manage.py
HOST ?= 127.0.0.1
PORT ?= 8000
SEED ?= 0
VAR_DIR ?= $(or $(SHOP_DEMO_VAR_DIR),var)
# The text model ships inside a pip package; nothing is ever downloaded at run time.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test test-altcatalog test-oscar install install-test browser-deps migrate seed train retrain serve clean help

help:
	@echo "make demo   - install, migrate, seed, train and serve the shop at http://$(HOST):$(PORT)"
	@echo "make test   - install test dependencies and run the whole suite"

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PIP) install --quiet -r requirements-test.txt
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test browser-deps

# Debian's Chromium for the browser test; the test skips with a message where it is absent.
browser-deps:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  { (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) 2>/dev/null || \
	    echo "note: could not install Debian's chromium; the browser test will be skipped"; }

# The demo runs with DEBUG on (static files served by runserver, error pages with tracebacks);
# the settings keep it off everywhere else (see README, "Running in production").
demo serve migrate seed train retrain: export DJANGO_DEBUG = 1

migrate: install
	$(MANAGE) migrate --noinput

seed: migrate
	$(MANAGE) seed_demo --seed $(SEED) --if-empty

# Trains once; `make retrain` trains again (the shop keeps serving the previous versions meanwhile).
train: seed
	@if [ -f $(VAR_DIR)/.demo-trained ]; then echo "Models already trained (make retrain to train again)."; \
	  else $(MANAGE) recommender_train --sync && touch $(VAR_DIR)/.demo-trained; fi

retrain: install
	$(MANAGE) recommender_train --sync && touch $(VAR_DIR)/.demo-trained

serve:
	$(MANAGE) runserver $(HOST):$(PORT)

demo: train
	@echo "The shop runs at http://$(HOST):$(PORT)/  (Ctrl-C stops it)"
	$(MANAGE) runserver $(HOST):$(PORT)

test: install-test
	$(PY) -m pytest
	$(MAKE) --no-print-directory test-altcatalog
	$(MAKE) --no-print-directory test-oscar

# The reusable app's tests again, against a differently shaped host catalog.
test-altcatalog: install-test
	DJANGO_SETTINGS_MODULE=tests.settings_altcatalog $(PY) -m pytest -m "not shop and not slow" -q

# The app installed in a django-oscar shop (tests/oscar_site), through Oscar's own views and checkout.
test-oscar: install-test
	DJANGO_SETTINGS_MODULE=tests.oscar_site.settings $(PY) -m pytest tests/oscar_site -m oscar -q

clean:
	rm -rf $(VENV) var
