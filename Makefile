# Shortcuts for the documented commands; test.sh does the work (and needs root).
.PHONY: test reliability cli-docs

test:
	./test.sh

reliability:
	./test.sh --reliability

PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

# docs/cli.md from the commands' own help (tests/unit/test_cli_docs.py checks it is current)
cli-docs:
	$(PYTHON) -m flexvol.cli.docs
