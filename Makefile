# Metanode — the two commands:
#   make run    install what is missing, build, initialise a dev node in ./.metanode, start it with every plugin
#   make test   install what is missing, build, run every test
#
# Other targets: make build | bundle | release | bench | bench-chain | bench-docklock | sim | fuzz | clean

SHELL := /bin/bash
SWIFT ?= swift
CONFIG ?= debug
DATA_DIR ?= $(CURDIR)/.metanode
APT_PACKAGES := librocksdb-dev libsodium-dev libffi-dev libjemalloc-dev zlib1g-dev pkg-config minisign libseccomp-dev busybox-static \
	qemu-system-x86

# Release builds optimise across modules: the ledger's hot paths call generic code in the SDK's MetanodeWire and
# BPI's core from the plugin modules, which without it run unspecialized, through witness tables and runtime type
# metadata (3.4% more transfers/s on `bench chain`, eight pairs of runs).
SWIFT_BUILD_FLAGS_release := -Xswiftc -cross-module-optimization
SWIFT_BUILD_FLAGS = $(SWIFT_BUILD_FLAGS_$(CONFIG))
BIN := $(shell $(SWIFT) build -c $(CONFIG) --show-bin-path 2>/dev/null)
METANODE = $(BIN)/metanode
BUNDLE = $(BIN)/metanode-plugins
DEV_KEY = .build/dev-publisher

.PHONY: run test build bundle deps release bench bench-chain bench-docklock fuzz sim clean

run: build
	@if [ ! -f "$(DATA_DIR)/config.json" ]; then \
	  "$(METANODE)" node init --dev --data-dir "$(DATA_DIR)" --bundled-plugins "$(BUNDLE)" && \
	  "$(METANODE)" chain genesis --chain-id metanode-dev --data-dir "$(DATA_DIR)"; fi
	exec "$(METANODE)" node start --data-dir "$(DATA_DIR)"

# Three groups, one after the other: unit tests; the network transport's tests (real sockets and timers, which a
# loaded 2-core machine can starve); then the end-to-end tests, which start real node processes and block while they
# wait for them. Run together, the blocking ones hold the test runner's two worker threads and stall the others.
# Last, DockLock's container tests again inside a QEMU guest booted with cgroup v2 alone (this host is hybrid).
test: build
	$(SWIFT) test -c $(CONFIG) --skip EndToEndTests --skip MetanodeNetTests
	$(SWIFT) test -c $(CONFIG) --skip-build --filter MetanodeNetTests
	$(SWIFT) test -c $(CONFIG) --skip-build --filter EndToEndTests
	CONFIG=$(CONFIG) Tests/vm/cgroup-v2.sh

# Debian packages the build and tests need; installed only when missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; fi

build: deps
	$(SWIFT) build -c $(CONFIG) $(SWIFT_BUILD_FLAGS)
	$(MAKE) bundle

# Bundled plugins: each package (manifest + library) under $(BUNDLE), signed with a per-checkout dev publisher key
# that `metanode node init --dev` trusts. The key stays in .build/, never in git.
bundle:
	$(MAKE) -C plugin-sdk/examples/hello-c
	@mkdir -p "$(BUNDLE)/hello-c" "$(BUNDLE)/hello-swift"
	@[ -f "$(DEV_KEY).key" ] || "$(METANODE)" plugin keygen --out "$(DEV_KEY)" >/dev/null
	@cp "$(DEV_KEY).pub" "$(BUNDLE)/dev-publisher.pub"
	@cp plugin-sdk/examples/hello-c/metanode-plugin.json plugin-sdk/examples/hello-c/libhello_c.so "$(BUNDLE)/hello-c/"
	@cp plugin-sdk/examples/hello-swift/metanode-plugin.json "$(BIN)/libHelloSwift.so" "$(BUNDLE)/hello-swift/"
	@mkdir -p "$(BUNDLE)/bpi" && cp Plugins/BPI/metanode-plugin.json "$(BIN)/libBPI.so" "$(BUNDLE)/bpi/"
	@mkdir -p "$(BUNDLE)/bpci" && cp Plugins/BPCI/metanode-plugin.json "$(BIN)/libBPCI.so" "$(BUNDLE)/bpci/"
	@mkdir -p "$(BUNDLE)/docklock" && cp Plugins/DockLock/metanode-plugin.json "$(BIN)/libDockLock.so" "$(BUNDLE)/docklock/"
	@for p in hello-c hello-swift bpi bpci docklock; do "$(METANODE)" plugin sign "$(BUNDLE)/$$p" --key "$(DEV_KEY).key" >/dev/null; done
	@echo "bundled plugins signed in $(BUNDLE)"

release:
	$(MAKE) build CONFIG=release

# Benchmarks (package-benchmark) in release mode; the node-start benchmark spawns the release binary.
bench: deps
	$(SWIFT) build -c release $(SWIFT_BUILD_FLAGS_release) --product metanode
	cd Benchmarks && $(SWIFT) package --disable-sandbox benchmark

# The ledger on 4 validator processes: throughput, latency at half load, leader crash to next block.
bench-chain:
	$(MAKE) release
	"$$($(SWIFT) build -c release --show-bin-path)/metanode" bench chain $(BENCH_ARGS)

# DockLock: /bin/true lifecycles through the node's API and from the shell, beside crun and runc (same run).
bench-docklock:
	$(MAKE) release
	Benchmarks/docklock.sh

# The network frame decoder under libFuzzer (FUZZ_RUNS inputs, default 1,000,000). Not part of make test.
FUZZ_RUNS ?= 1000000
# Consensus simulation sweep: SEEDS seeds per scenario (make test runs 30). A failure prints the seed and the
# command that replays it alone (METANODE_SIM_SEED=N).
SEEDS ?= 1000
sim: deps
	METANODE_SIM_SEEDS=$(SEEDS) $(SWIFT) test -c release --filter QBFTSimulationTests

fuzz: deps
	cd Fuzz && $(SWIFT) build -c release -Xswiftc -sanitize=fuzzer,address --product NetFrameFuzzer
	mkdir -p .build/fuzz-corpus && cp Fuzz/Corpus/NetFrameFuzzer/* .build/fuzz-corpus/
	Fuzz/.build/release/NetFrameFuzzer -runs=$(FUZZ_RUNS) -print_final_stats=1 .build/fuzz-corpus

clean:
	$(SWIFT) package clean
	$(MAKE) -C plugin-sdk/examples/hello-c clean
