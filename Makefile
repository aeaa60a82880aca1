# Two entry points for a newcomer on a fresh Debian machine; each installs what it needs.
#   make test   every test: formatting, lints, unit, golden, fake-API, CLI, shim and build tests
#   make demo   the main job (see README)
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: test demo deps lint fmt bench bench-startup

deps:
	@scripts/install-deps.sh test

test: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
	$(CARGO) test --locked

lint:
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

demo:
	@echo "make demo arrives with the Dockerfile build (issue 5): it will build examples/hello-action rootless," >&2
	@echo "push it to a local registry under a random tag and run it. Until then, 'make test' shows what works." >&2
	@exit 2

bench: bench-startup ## start-up cost of the hook binary and the node shim (see bench/README.md)

bench-startup: deps
	bench/startup.sh
