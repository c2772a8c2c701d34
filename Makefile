# A convenience where make exists: the README's commands are `./run demo` and `./run test`,
# which need nothing but a shell (scripts/setup.sh installs the rest, make included).
.PHONY: setup demo test clean

setup:
	@./run setup

demo:
	./run demo

test:
	./run test

clean:
	rm -rf .venv build *.egg-info .pytest_cache .hypothesis
