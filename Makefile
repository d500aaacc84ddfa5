# Pylon: `make run` serves conf/examples/demo; `make test` runs the whole suite.
CARGO ?= cargo

.PHONY: all build run test lint fmt bootstrap

all: build

bootstrap:
	@scripts/bootstrap

build: bootstrap
	$(CARGO) build --release --bin pylon --bin echo-upstream

# The demo: two echo upstreams on 127.0.0.1:9081 (v1) and :9082 (v2), and Pylon serving
# conf/examples/demo on http://127.0.0.1:8080 and https://127.0.0.1:8443 (readiness on
# 127.0.0.1:15021). Ctrl-C stops both. The HTTPS certificate (credential demo-cert) and the CA that
# signed it are made once, in target/demo-certs.
DEMO_CERTS := target/demo-certs

run: build $(DEMO_CERTS)/demo-cert/tls.crt
	@target/release/echo-upstream v1=127.0.0.1:9081 v2=127.0.0.1:9082 & up=$$!; \
	trap 'kill $$up 2>/dev/null' EXIT INT TERM; \
	target/release/pylon run --config conf/examples/demo --credentials-dir $(DEMO_CERTS) \
	  --status-addr 127.0.0.1:15021

$(DEMO_CERTS)/demo-cert/tls.crt:
	@mkdir -p $(DEMO_CERTS)/demo-cert
	@openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj /CN=pylon-demo-ca \
	  -keyout $(DEMO_CERTS)/ca.key -out $(DEMO_CERTS)/ca.crt 2>/dev/null
	@openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=demo.pylon.test \
	  -keyout $(DEMO_CERTS)/demo-cert/tls.key -out $(DEMO_CERTS)/demo.csr 2>/dev/null
	@printf 'subjectAltName=DNS:demo.pylon.test,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' \
	  > $(DEMO_CERTS)/demo.ext
	@openssl x509 -req -in $(DEMO_CERTS)/demo.csr -CA $(DEMO_CERTS)/ca.crt -CAkey $(DEMO_CERTS)/ca.key \
	  -CAcreateserial -days 825 -extfile $(DEMO_CERTS)/demo.ext -out $(DEMO_CERTS)/demo-cert/tls.crt 2>/dev/null
	@echo "demo certificate: $(DEMO_CERTS)/demo-cert/tls.crt (CA: $(DEMO_CERTS)/ca.crt)"

# The whole suite: formatting, lints (warnings are errors), unit, golden and end-to-end tests,
# every shipped example validated by the built binary, and the benchmark harness's scenarios
# generated and validated (no traffic).
test: bootstrap
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) test --workspace --locked
	scripts/bench-smoke
	scripts/istio-tables --self-test

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
