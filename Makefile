# wsgate: the two commands are `make run` (build everything, run the demo)
# and `make test` (every test). Everything else is a step of those.

CARGO       ?= cargo
WASM_TARGET := wasm32-wasip2
# Where cargo puts what it builds: CARGO_TARGET_DIR when it is set, else
# target/. Every step below finds the binaries and plugins here.
TARGET_DIR  := $(abspath $(or $(CARGO_TARGET_DIR),target))
export CARGO_TARGET_DIR := $(TARGET_DIR)
# Plugins build with their own profile (optimised, LTO, stripped): they are
# shipped as .wasm files and compiled again by wasmtime on load.
PLUGIN_DIR  := $(TARGET_DIR)/$(WASM_TARGET)/plugin
# The plugins of the workspace (the end-to-end tests read this line when
# they build them themselves, under a plain `cargo test`).
PLUGINS     := echo-client bench-client autobahn-client throughput-client hostile sockets-importer echo-server ws-proxy gateway-probe

export WSGATE_PLUGIN_DIR := $(PLUGIN_DIR)

.PHONY: run test bench soak plugins build wasm-target clean conformance conformance-full py-websockets ech-server deploy-check

## run: build the host, the testbed and the plugins, and run the demo
run: build plugins
	@bash examples/demo.sh $(TARGET_DIR)/release $(PLUGIN_DIR)

## test: unit tests (host, guest SDK, testbed), end-to-end tests, the
## deployment files' checks, then the Autobahn conformance run through the
## wsgate binary the tests built
test: plugins py-websockets ech-server
	WSGATE_ECH_SERVER=$(TARGET_DIR)/debug/wsgate-ech-server \
		$(CARGO) test --workspace --exclude $(firstword $(PLUGINS)) $(addprefix --exclude ,$(wordlist 2,99,$(PLUGINS)))
	$(MAKE) deploy-check WSGATE=$(TARGET_DIR)/debug/wsgate
	$(MAKE) conformance WSGATE=$(TARGET_DIR)/debug/wsgate

## conformance: the Autobahn|Testsuite client cases 1.* to 10.* against the
## autobahn-client plugin through wsgate run, checked against
## tests/autobahn/expected-1-10.json; then its server cases (fuzzingclient)
## 1.* to 10.* against the echo-server plugin through wsgate serve, checked
## against tests/autobahn/expected-server-1-10.json. Needs Python 2.7:
## without one the step says so loudly and is skipped, or fails when CI=true.
## conformance-full: the same with 12.* and 13.* (permessage-deflate).
## WSGATE=path/to/wsgate picks the binary (default: a debug build).
WSGATE      ?=
conformance conformance-full: plugins
	@if [ -z "$(WSGATE)" ]; then $(CARGO) build -p wsgate-host --bin wsgate; fi
	bash tests/autobahn/run.sh $(if $(filter conformance-full,$@),--full) \
		--wsgate $(or $(WSGATE),$(TARGET_DIR)/debug/wsgate) \
		--plugin $(PLUGIN_DIR)/autobahn-client.wasm \
		--out $(TARGET_DIR)/autobahn/$(if $(filter conformance-full,$@),full,1-10)
	bash tests/autobahn/run-server.sh $(if $(filter conformance-full,$@),--full) \
		--wsgate $(or $(WSGATE),$(TARGET_DIR)/debug/wsgate) \
		--plugin $(PLUGIN_DIR)/echo_server.wasm \
		--out $(TARGET_DIR)/autobahn/server-$(if $(filter conformance-full,$@),full,1-10)

## deploy-check: deploy/ (Dockerfile, systemd unit, Kubernetes manifests,
## wsgate.toml) linted, validated against schemas and started with the
## debug wsgate (deploy/check.sh; its tools come from PyPI into
## $(TARGET_DIR)/deploy-check: without them it says so loudly and skips
## them, or fails when CI=true). WSGATE=path/to/wsgate as for conformance.
deploy-check: plugins
	@if [ -z "$(WSGATE)" ]; then $(CARGO) build -p wsgate-host --bin wsgate; fi
	bash deploy/check.sh --wsgate $(or $(WSGATE),$(TARGET_DIR)/debug/wsgate) --plugins $(PLUGIN_DIR) \
		--work $(TARGET_DIR)/deploy-check

## bench: wsgate against tokio-tungstenite and hyper-util on the testbed's
## per-family failures, then process start to first echo against a server
## with Nagle on that sends TLS tickets late, then a plugin's echo
## throughput against native tokio-tungstenite, then `wsgate serve`
## (sessions per second, instantiation, RSS per idle session, ws-proxy
## against nginx, which bench/nginx.sh installs from Debian's packages when
## missing), then the race's history
## on a host whose IPv6 is slow (root: network namespaces) (BENCHMARKS.md).
## Extra flags: make bench BENCH_ARGS='--runs 50' SERVE_BENCH_ARGS='--rounds 9'
BENCH_ARGS  ?=
SERVE_BENCH_ARGS ?=
bench: build plugins
	$(CARGO) run --release -p wsgate-bench -- \
		--wsgate $(TARGET_DIR)/release/wsgate \
		--plugin $(PLUGIN_DIR)/bench-client.wasm \
		--json $(TARGET_DIR)/bench.json $(BENCH_ARGS)
	$(CARGO) run --release -p wsgate-bench --bin wsgate-first-echo -- \
		--wsgate $(TARGET_DIR)/release/wsgate \
		--plugin $(PLUGIN_DIR)/echo-client.wasm
	$(CARGO) run --release -p wsgate-bench --bin wsgate-throughput -- \
		--wsgate $(TARGET_DIR)/release/wsgate \
		--plugin $(PLUGIN_DIR)/throughput-client.wasm
	$(CARGO) run --release -p wsgate-bench --bin wsgate-serve-bench -- \
		--wsgate $(TARGET_DIR)/release/wsgate \
		--echo-plugin $(PLUGIN_DIR)/echo_server.wasm \
		--proxy-plugin $(PLUGIN_DIR)/ws_proxy.wasm \
		--nginx "$$(bash bench/nginx.sh || echo nginx)" $(SERVE_BENCH_ARGS)
	$(CARGO) run --release -p wsgate-bench --bin wsgate-slow-ipv6 -- --wsgate $(TARGET_DIR)/release/wsgate --plugin $(PLUGIN_DIR)/echo-client.wasm --json $(TARGET_DIR)/slow-ipv6.json

## soak: 10,000 sessions through ws-proxy over two gateways while faults are
## injected (upstream resets, IPv6 blackholed, traps, vanishing clients,
## slow headers, a flood past the limit), every message counted at both
## ends, then a drain; a few minutes, bounded; not part of `make test`
## (BENCHMARKS.md). Extra flags: make soak SOAK_ARGS='--sessions 2000 --no-drain'
SOAK_ARGS   ?=
soak: plugins
	$(CARGO) build --release -p wsgate-host --bin wsgate
	$(CARGO) run --release -p wsgate-bench --bin wsgate-soak -- \
		--wsgate $(TARGET_DIR)/release/wsgate \
		--proxy-plugin $(PLUGIN_DIR)/ws_proxy.wasm \
		--probe-plugin $(PLUGIN_DIR)/gateway_probe.wasm $(SOAK_ARGS)

## py-websockets: Python's websockets under build/py, for the serve test
## that uses it as a client (skipped, saying so, when it cannot be installed)
PY_WEBSOCKETS := websockets==13.1
py-websockets:
	@if ! PYTHONPATH=build/py python3 -c 'import websockets.sync.client' 2>/dev/null; then \
		python3 -m pip install --quiet --disable-pip-version-check --target build/py '$(PY_WEBSOCKETS)' 2>/dev/null \
		|| echo "no Python websockets: the serve test that uses it is skipped"; \
	fi

## ech-server: the BoringSSL server that accepts Encrypted Client Hello,
## for the ECH tests. BoringSSL builds with cmake and bindgen (libclang):
## Debian's packages are installed when missing.
ech-server:
	@if ! command -v cmake >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/include/stddef.h >/dev/null 2>&1; then \
		echo "installing cmake and libclang-dev (Debian) for BoringSSL"; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends cmake libclang-dev >/dev/null; \
	fi
	$(CARGO) build -p wsgate-ech-server

## plugins: the example plugins, as wasm32-wasip2 components
plugins: wasm-target
	$(CARGO) build --profile plugin --target $(WASM_TARGET) $(addprefix -p ,$(PLUGINS))

## build: the wsgate binary and the testbed, optimised
build:
	$(CARGO) build --release -p wsgate-host -p wsgate-testbed

## wasm-target: add the wasm32-wasip2 target with rustup when it is missing
wasm-target:
	@if ! rustup target list --installed 2>/dev/null | grep -qx '$(WASM_TARGET)'; then \
		echo "adding the $(WASM_TARGET) target with rustup"; \
		rustup target add $(WASM_TARGET); \
	fi

clean:
	$(CARGO) clean
