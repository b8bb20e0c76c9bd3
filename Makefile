# Two entry points: `make demo` (the quickstart recipe on the embedded sample photos) and `make test`.
# Each creates .venv with python -m venv + pip when it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-stamp

# Data and weights: ../shared when it exists (this project's machines), unless already set.
SHARED := $(abspath ..)/shared
ifneq ($(wildcard $(SHARED)/data),)
export SRCOMPRESS_DATA ?= $(SHARED)/data
endif
ifneq ($(wildcard $(SHARED)/weights),)
export SRCOMPRESS_WEIGHTS ?= $(SHARED)/weights
endif

.PHONY: demo test install

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/srcompress run recipes/quickstart.yaml

# pytest exits 5 when it collects no test: reported, not a failure.
test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS) || { rc=$$?; if [ $$rc -eq 5 ]; then echo 'pytest: no tests collected (exit 5)'; else exit $$rc; fi; }
