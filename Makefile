# Pylon: `make run` serves conf/examples/demo; `make test` runs the whole suite.
CARGO ?= cargo

.PHONY: all build run test lint fmt bootstrap

all: build

bootstrap:
	@scripts/bootstrap

build: bootstrap
	$(CARGO) build --release --bin pylon --bin echo-upstream

# The demo: two echo upstreams on 127.0.0.1:9081 (v1) and :9082 (v2), and Pylon serving
# conf/examples/demo on http://127.0.0.1:8080 (readiness on 127.0.0.1:15021). Ctrl-C stops both.
run: build
	@target/release/echo-upstream v1=127.0.0.1:9081 v2=127.0.0.1:9082 & up=$$!; \
	trap 'kill $$up 2>/dev/null' EXIT INT TERM; \
	target/release/pylon run --config conf/examples/demo --status-addr 127.0.0.1:15021

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
