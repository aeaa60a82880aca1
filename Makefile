# Entry points for a newcomer on a fresh Debian machine; each installs what it needs.
#   make test   every test: formatting, lints, doc links, unit, golden, fake-API, CLI, shim and build tests
#   make demo   the main job (see README)
#   make dist   the release binaries in target/dist/, checked (docs/developer/releasing.md)
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: test demo dist check-dist deps lint fmt bench bench-startup bench-build bench-copy bench-wait bench-reuse

deps:
	@scripts/install-deps.sh test

test: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
	RUSTDOCFLAGS=-Dwarnings $(CARGO) doc --no-deps --lib --locked
	$(CARGO) test --locked

lint:
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

dist: ## static x86_64 and aarch64 Linux binaries and SHA256SUMS in target/dist/, then the static check (scripts/dist.sh)
	@scripts/dist.sh

check-dist: ## the static check alone, of what target/dist/ holds (scripts/check-dist.sh)
	@scripts/check-dist.sh

demo: ## build examples/hello-action rootless, push it to a local registry, run it (scripts/demo.sh)
	@scripts/demo.sh

bench: bench-startup bench-copy bench-build bench-wait bench-reuse ## every benchmark (see bench/README.md)

bench-copy: deps
	bench/copy.sh

bench-startup: deps
	bench/startup.sh

bench-build: deps
	bench/build.sh

bench-wait: deps
	bench/wait.sh

bench-reuse: deps
	bench/reuse.sh
