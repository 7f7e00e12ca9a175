# Installing and packaging kdthin-ld. Included by the top Makefile.
#
#   make install        build (release) and install both programs, the fork
#                       server's shim and the man pages under $(DESTDIR)$(PREFIX)
#   make uninstall      remove what install put there
#   make vendor         copy every dependency into vendor/ (for offline
#                       builds and source tarballs); not committed. It
#                       records the Cargo.lock it copied (vendor/Cargo.lock.sha256)
#                       so that mk/deb.sh can tell when it is stale
#   make offline-build  release build from vendor/ only: no network, no
#                       registry cache, exactly the versions in Cargo.lock
#   make repro-check    build twice in different directories, compare the
#                       binaries byte for byte
#   make deb            a Debian package of what install installs, in
#                       $(DEB_DIR), compiled offline from vendor/ (mk/deb.sh;
#                       tested by .ci/check-deb.sh)
#
# Variables (GNU conventions): PREFIX (/usr/local), DESTDIR (staging root,
# for packagers), BINDIR ($(PREFIX)/bin), MANDIR ($(PREFIX)/share/man).
# VENDORED=1: install builds from vendor/ only, offline (what `make deb` does).
# The shim goes to $(BINDIR)/../lib/kdthin-ld/, where kdthin-ld looks for
# it relative to its own executable (src/exec/forkserver/mod.rs).
#
# vendor/ holds its own Cargo configuration, vendor/config.toml, which the
# targets here pass with `--config`. Nothing is written to .cargo/: a
# source replacement there would break every ordinary build the moment
# vendor/ is missing or stale. To build a vendored tarball with plain
# cargo, copy vendor/config.toml to .cargo/config.toml in the tarball.

CARGO ?= cargo
CARGO_TARGET_DIR ?= target
INSTALL ?= install
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
MAN1DIR ?= $(MANDIR)/man1

KDTHIN_PROGRAMS := kdthin-ld kdthin
KDTHIN_MAN1 := docs/kdthin-ld.1 docs/kdthin.1
# Built by build.rs beside the programs.
KDTHIN_SHIM := libkdthin-forkserver.so
KDTHIN_SHIMDIR = $(BINDIR)/../lib/kdthin-ld
KDTHIN_RELEASE_DIR = $(abspath $(CARGO_TARGET_DIR))/release
KDTHIN_VENDOR_CONFIG := vendor/config.toml
DEB_DIR ?= $(abspath $(CARGO_TARGET_DIR))/deb

.PHONY: install install-build uninstall vendor offline-build repro-check deb

# cargo does nothing when the binaries are up to date, so `make build` as a
# user followed by `sudo make install` compiles nothing as root.
ifeq ($(VENDORED),1)
KDTHIN_SOURCE_FLAGS = --offline --config $(KDTHIN_VENDOR_CONFIG)
endif

install-build:
ifeq ($(VENDORED),1)
	@test -f $(KDTHIN_VENDOR_CONFIG) || { echo "VENDORED=1: no vendored sources: run 'make vendor' first" >&2; exit 1; }
endif
	CARGO_TARGET_DIR=$(abspath $(CARGO_TARGET_DIR)) $(CARGO) build --release --locked --bins $(KDTHIN_SOURCE_FLAGS)

install: install-build
	$(foreach p,$(KDTHIN_PROGRAMS),$(INSTALL) -D -m 0755 $(KDTHIN_RELEASE_DIR)/$(p) $(DESTDIR)$(BINDIR)/$(p) &&) true
	$(INSTALL) -D -m 0644 $(KDTHIN_RELEASE_DIR)/$(KDTHIN_SHIM) $(DESTDIR)$(KDTHIN_SHIMDIR)/$(KDTHIN_SHIM)
	$(foreach m,$(KDTHIN_MAN1),$(INSTALL) -D -m 0644 $(m) $(DESTDIR)$(MAN1DIR)/$(notdir $(m)) &&) true

uninstall:
	rm -f $(foreach p,$(KDTHIN_PROGRAMS),$(DESTDIR)$(BINDIR)/$(p)) \
	      $(DESTDIR)$(KDTHIN_SHIMDIR)/$(KDTHIN_SHIM) \
	      $(foreach m,$(KDTHIN_MAN1),$(DESTDIR)$(MAN1DIR)/$(notdir $(m)))
	rmdir $(DESTDIR)$(KDTHIN_SHIMDIR) 2>/dev/null || true

deb:
	CARGO_TARGET_DIR=$(abspath $(CARGO_TARGET_DIR)) mk/deb.sh $(DEB_DIR)

# `cargo vendor` prints the source replacement that points at vendor/.
vendor:
	$(CARGO) vendor --locked vendor > .vendor-config.toml.tmp
	sha256sum Cargo.lock > vendor/Cargo.lock.sha256
	mv .vendor-config.toml.tmp $(KDTHIN_VENDOR_CONFIG)

offline-build:
	@test -f $(KDTHIN_VENDOR_CONFIG) || { echo "no vendored sources: run 'make vendor' first" >&2; exit 1; }
	CARGO_TARGET_DIR=$(abspath $(CARGO_TARGET_DIR)) $(CARGO) build --release --offline --locked \
		--config $(KDTHIN_VENDOR_CONFIG)

# Two builds that share nothing but the sources' content: the second runs
# in a copy of the tree, as another checkout would, and each in its own
# target directory. Paths are what differs between checkouts or machines:
# the source tree, the target directory (build scripts' OUT_DIR) and
# cargo's registry are mapped to fixed names. SOURCE_DATE_EPOCH is set for
# any dependency that stamps a date.
REPRO_EPOCH := $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
REPRO_CARGO_HOME := $(or $(CARGO_HOME),$(HOME)/.cargo)

repro-check:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	mkdir "$$tmp/copy"; \
	tar -C $(CURDIR) --exclude=./target --exclude=./vendor --exclude=./.git -cf - . | tar -C "$$tmp/copy" -xf -; \
	for n in 1 2; do \
	    if [ $$n = 1 ]; then src=$(CURDIR); else src="$$tmp/copy"; fi; \
	    tgt="$$tmp/target-$$n"; \
	    echo "repro-check: build $$n of $$src in $$tgt"; \
	    (cd "$$src" && SOURCE_DATE_EPOCH=$(REPRO_EPOCH) CARGO_TARGET_DIR="$$tgt" \
	        RUSTFLAGS="--remap-path-prefix=$$src=. --remap-path-prefix=$$tgt=/target --remap-path-prefix=$(REPRO_CARGO_HOME)=/cargo" \
	        $(CARGO) build --release --locked --bins --quiet); \
	    (cd "$$tgt/release" && sha256sum $(KDTHIN_PROGRAMS) $(KDTHIN_SHIM)) > "$$tmp/sums-$$n"; \
	done; \
	cat "$$tmp/sums-1"; \
	if cmp -s "$$tmp/sums-1" "$$tmp/sums-2"; then \
	    echo "repro-check: identical"; \
	else \
	    echo "repro-check: the binaries differ:" >&2; diff "$$tmp/sums-1" "$$tmp/sums-2" >&2; exit 1; \
	fi
