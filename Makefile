# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: run test lint format messages admin-password clean

run: $(VENV)/.installed
	$(PY) manage.py serve

test: $(VENV)/.installed-test
	$(PY) -m pytest

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(VENV)/.installed-test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The zh_Hans catalogue: new sentences in, then compiled (needs GNU gettext). The same
# scan as tests/test_catalogue.py, which fails on any sentence left untranslated.
messages: $(VENV)/.installed
	$(PY) manage.py makemessages -l zh_Hans --no-location --ignore=.venv --ignore=var \
	  --ignore=tests --ignore=bench --ignore="*.egg-info" --ignore=node_modules
	cd nanoweb && ../$(PY) ../manage.py compilemessages -l zh_Hans

admin-password: $(VENV)/.installed
	$(PY) manage.py changepassword $${NANOWEB_ADMIN_EMAIL:-admin@example.com}

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PIP) -e ".[test]"
	touch $@

clean:
	rm -rf $(VENV) var/staticfiles .pytest_cache
