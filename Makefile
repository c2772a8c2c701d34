# The two commands of the README: `make demo` (the main job) and `make test` (the tests).
# Each installs what it needs first (scripts/setup.sh).
.PHONY: setup demo test bench clean

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/python scripts/demo.py

test: setup
	.venv/bin/python -m pytest -q

clean:
	rm -rf .venv build *.egg-info .pytest_cache .hypothesis
