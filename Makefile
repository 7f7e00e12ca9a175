# kdthin-ld: the two commands of the README, and their parts.
#
#   make demo           set up, build kdthin-ld, link a real 6.12 ThinLTO kernel
#                       with it, boot it in qemu (KERNEL_ARCH=arm64: cross-built
#                       for arm64, booted on qemu's virt machine)
#   make test           set up, then everything CI runs: unit and black-box
#                       tests (real clang/lld), man page, install, offline
#                       build, real kernels (kernel-test)
#
#   make build          cargo build --release
#   make deps           install what the tests use: mk/deps.txt (apt, PyPI)
#   make cargo-test     cargo test only
#   make kernel-test    real kernels (CI set): see kernel-fixtures/kernel.sh
#   make kernel-matrix  every kernel/LLVM combination; writes docs/KERNEL-MATRIX.md
#   make bench          benchmarks (bench/run); writes docs/BENCHMARKS.md
#   make install        see mk/install.mk (PREFIX, DESTDIR, BINDIR, MANDIR)
#   make deb            a Debian package (mk/deb.sh), in target/deb
#
# The kernel targets install what they need with apt (sudo when not root) and
# work in $(KDTHIN_KERNEL_WORK) (default /var/tmp/kdthin-kernels); see the
# header of kernel-fixtures/kernel.sh for their knobs.

CARGO ?= cargo
CARGO_TARGET_DIR ?= target
KDTHIN_BIN ?= $(abspath $(CARGO_TARGET_DIR))/release/kdthin-ld
# The architecture of `make demo` (x86_64, arm64; default x86_64); set for
# kernel-test or kernel-matrix, it runs only that architecture's kernels.
KERNEL_ARCH ?=
KERNEL_SH := KDTHIN_BIN=$(KDTHIN_BIN) CARGO_TARGET_DIR=$(abspath $(CARGO_TARGET_DIR)) KDTHIN_KERNEL_ARCH=$(KERNEL_ARCH) kernel-fixtures/kernel.sh

# What the tests need (packages, and the commands they provide) is declared
# in mk/deps.txt, the one list: `make deps` (mk/deps.sh) installs its `test`
# lines, kernel-fixtures/kernel.sh its `kernel` lines, and .ci/check-deps.py
# (`make checks`) fails when a test or script runs a command it does not name.
.PHONY: all build deps test cargo-test checks kernel-test kernel-matrix demo bench

all: build

build:
	CARGO_TARGET_DIR=$(abspath $(CARGO_TARGET_DIR)) $(CARGO) build --release

# Installs only what is missing; runs without make too (mk/deps.sh).
deps:
	mk/deps.sh

cargo-test: deps
	CARGO_TARGET_DIR=$(abspath $(CARGO_TARGET_DIR)) $(CARGO) test

checks: deps build
	$(CARGO) fmt --check
	.ci/check-deps.py
	.ci/check-man.sh
	CARGO_TARGET_DIR=$(abspath $(CARGO_TARGET_DIR)) .ci/check-install.sh
	CARGO_TARGET_DIR=$(abspath $(CARGO_TARGET_DIR)) .ci/check-deb.sh
	CARGO_TARGET_DIR=$(abspath $(CARGO_TARGET_DIR)) .ci/check-offline.sh
	$(MAKE) repro-check

# cargo test first: it is quick and fails fast. The real kernels are linked
# by the binary as installed into a DESTDIR, as a packager would ship it;
# with DEB=1 (CI) by the kdthin-ld of the .deb, installed with apt-get and
# found on PATH as LD=kdthin-ld, the way the package's users run it; it is
# purged again afterwards, pass or fail (.ci/check-deb.sh --with).
STAGE := $(abspath $(CARGO_TARGET_DIR))/stage
test: cargo-test checks
ifeq ($(DEB),1)
	CARGO_TARGET_DIR=$(abspath $(CARGO_TARGET_DIR)) .ci/check-deb.sh --with $(MAKE) kernel-test KDTHIN_BIN=kdthin-ld
else
	$(MAKE) install DESTDIR=$(STAGE) PREFIX=/usr
	$(MAKE) kernel-test KDTHIN_BIN=$(STAGE)/usr/bin/kdthin-ld
endif

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
