# dmsfs — a FUSE filesystem for scientific data archives.
# Overridable: CC OPT CFLAGS CPPFLAGS LDFLAGS prefix sysconfdir DESTDIR
# SANITIZER (e.g. address,undefined)

CC       ?= cc
OPT      ?= -O2 -g
STD      := -std=gnu11
WARN     := -Wall -Wextra -Werror -Wstrict-prototypes -Wmissing-declarations \
            -Wwrite-strings -Wshadow -Wno-unused-parameter
PKGS     := fuse3 libcurl lmdb libxxhash libxml-2.0 inih globus-ftp-client globus-common
prefix   ?= /usr/local
DESTDIR  ?=
# mount(8) looks for helpers in /sbin only; systemd for units in /lib.
sysconfdir  ?= /etc
localstatedir ?= /var
mountdir    ?= /sbin
unitdir     ?= /lib/systemd/system
mandir      ?= $(prefix)/share/man
PYTHON   ?= /usr/bin/python3
# The one place the version is written: the Debian changelog's first line
# ("dmsfs (0.9.0-1) ..."); the programs print its upstream part.
VERSION  := $(shell awk -F'[()]' 'NR == 1 { sub(/-[^-]*$$/, "", $$2); print $$2 }' \
                packaging/debian/changelog)

ifneq ($(SANITIZER),)
SAN_FLAGS := -fsanitize=$(SANITIZER) -fno-omit-frame-pointer
# Daemons started by the tests inherit these.
export LSAN_OPTIONS := suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS := print_stacktrace=1:halt_on_error=1
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
FINAL_CFLAGS  = $(STD) $(WARN) $(OPT) $(SAN_FLAGS) -D_FILE_OFFSET_BITS=64 \
                -DFUSE_USE_VERSION=314 -DDMSFS_VERSION='"$(VERSION)"' \
                -I. $(PKG_CFLAGS) $(CPPFLAGS) $(CFLAGS) -MMD -MP
FINAL_LDFLAGS = $(SAN_FLAGS) $(LDFLAGS)
LIBS          = $(PKG_LIBS) -lpthread -lm

B := build

COMMON_SRC   := $(wildcard common/*.c)
CACHE_SRC    := $(wildcard cache/*.c)
XFER_SRC     := $(wildcard transfer/*.c)
ACL_SRC      := $(wildcard acl/*.c)
DMSCTL_SRC   := $(wildcard dmsctl/*.c)
FS_SRC       := $(filter-out fs/main.c,$(wildcard fs/*.c))

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))
COMMON_OBJ := $(call obj,$(COMMON_SRC))
CACHE_OBJ  := $(call obj,$(CACHE_SRC))
XFER_OBJ   := $(call obj,$(XFER_SRC))
ACL_OBJ    := $(call obj,$(ACL_SRC))
FS_OBJ     := $(call obj,$(FS_SRC))
DMSCTL_OBJ := $(call obj,$(DMSCTL_SRC))
ALL_LIB_OBJ := $(FS_OBJ) $(ACL_OBJ) $(CACHE_OBJ) $(XFER_OBJ) $(COMMON_OBJ)

# Unit tests: tests/unit/test_<module>_*.c links only that module (and common;
# test_common_*.c links common alone).
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(patsubst tests/tools/%.c,$(B)/tools/%,$(TOOL_SRC))

PROGS := $(B)/dmsfs $(B)/dmsctl

.PHONY: all progs clean deps test unit-tests bench soak demo demo-stop install fuzz \
        fuzz-build check-style deb test-package
all: $(PROGS) $(UNIT_BIN) $(TOOL_BIN)
progs: $(PROGS)

# Objects depend on the flags they were built with, so that
# `make SANITIZER=address,undefined test` after a plain build rebuilds all.
FLAGS_STAMP := $(B)/.flags
$(shell mkdir -p $(B); echo '$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS)' | \
	cmp -s - $(FLAGS_STAMP) || \
	echo '$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS)' > $(FLAGS_STAMP))

$(B)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) -c -o $@ $<

$(B)/dmsfs: $(B)/obj/fs/main.o $(ALL_LIB_OBJ)
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(LIBS)

# dmsctl/: the control program; it links the rules engine (acl lint/check)
# and common (control socket paths), never fs/.
$(B)/dmsctl: $(DMSCTL_OBJ) $(ACL_OBJ) $(COMMON_OBJ)
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(LIBS)

$(B)/tests/test_cache%: $(B)/obj/tests/unit/test_cache%.o $(CACHE_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(LIBS)
$(B)/tests/test_xfer%: $(B)/obj/tests/unit/test_xfer%.o $(XFER_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(LIBS)
$(B)/tests/test_acl%: $(B)/obj/tests/unit/test_acl%.o $(ACL_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(LIBS)
$(B)/tests/test_common%: $(B)/obj/tests/unit/test_common%.o $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(LIBS)
$(B)/tests/test_fs%: $(B)/obj/tests/unit/test_fs%.o $(ALL_LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(LIBS)
$(B)/tools/xfer%: $(B)/obj/tests/tools/xfer%.o $(XFER_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(LIBS)
$(B)/tools/%: $(B)/obj/tests/tools/%.o $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(LIBS)

deps:
	@sh packaging/install-deps.sh

# libFuzzer targets, one per parser of untrusted input: tests/fuzz/fuzz_NAME.c
# with its seed corpus tests/fuzz/corpus_NAME/ and, if there is one, the
# dictionary tests/fuzz/NAME.dict.  Objects are built apart (build/fuzz/obj)
# with clang and their own flags.  `make fuzz` runs each target for
# FUZZ_TIME seconds (FUZZ_TARGETS="acl url" picks some); new inputs go to
# build/fuzz/corpus_NAME, a crashing input to build/fuzz/crashes/NAME-*,
# whose path is printed with the failure.
FUZZ_TIME    ?= 60
FUZZ_TARGETS ?= $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_CC      ?= clang
FUZZ_CFLAGS  := $(STD) $(WARN) -O1 -g -fno-omit-frame-pointer \
                -fsanitize=fuzzer-no-link,address,undefined \
                -fno-sanitize-recover=all -D_FILE_OFFSET_BITS=64 \
                -DFUSE_USE_VERSION=314 -I. $(PKG_CFLAGS) -MMD -MP
FUZZ_LDFLAGS := -fsanitize=fuzzer,address,undefined
fuzz_obj = $(patsubst %.c,$(B)/fuzz/obj/%.o,$(1))
FUZZ_XFER := $(call fuzz_obj,$(XFER_SRC) $(COMMON_SRC))

$(B)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(B)/fuzz/fuzz_acl: $(call fuzz_obj,$(ACL_SRC) $(COMMON_SRC))
$(B)/fuzz/fuzz_url $(B)/fuzz/fuzz_http: $(FUZZ_XFER)
$(B)/fuzz/fuzz_propfind $(B)/fuzz/fuzz_mlsd: $(FUZZ_XFER)
$(B)/fuzz/fuzz_config: $(call fuzz_obj,$(FS_SRC) $(ACL_SRC) $(CACHE_SRC)) \
                       $(FUZZ_XFER)
$(B)/fuzz/fuzz_%: $(B)/fuzz/obj/tests/fuzz/fuzz_%.o
	$(FUZZ_CC) $(FUZZ_LDFLAGS) -o $@ $^ $(LIBS)

fuzz-build: $(patsubst %,$(B)/fuzz/fuzz_%,$(FUZZ_TARGETS))

# -close_fd_mask=2: the parsers log every refused input; libFuzzer and the
# sanitizers keep their own copy of stderr.  On a failure the crashing input
# is run once more with stderr open, so the broken invariant is shown.
FUZZ_ENV := LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0
fuzz: fuzz-build
	@failed=; export $(FUZZ_ENV); for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(B)/fuzz/corpus_$$t $(B)/fuzz/crashes; \
	    rm -f $(B)/fuzz/crashes/$$t-*; \
	    dict=; [ -f tests/fuzz/$$t.dict ] && dict=-dict=tests/fuzz/$$t.dict; \
	    echo "fuzz_$$t: $(FUZZ_TIME) s"; \
	    if ! $(B)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_TIME) -timeout=20 \
	        -close_fd_mask=2 -print_final_stats=0 $$dict \
	        -artifact_prefix=$(B)/fuzz/crashes/$$t- \
	        $(B)/fuzz/corpus_$$t tests/fuzz/corpus_$$t; then \
	        for c in $(B)/fuzz/crashes/$$t-*; do \
	            [ -f "$$c" ] || continue; \
	            $(B)/fuzz/fuzz_$$t "$$c" 2>&1 | tail -n 40; \
	            echo "fuzz_$$t: FAILED, crashing input: $$c"; \
	        done; \
	        failed="$$failed $$t"; \
	    fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz failed:$$failed"; exit 1; fi

# Every test, unit and integration, runs under pytest so the last line is
# its summary.  Integration tests need root (FUSE mounts, useradd, servers).
test: deps
	$(MAKE) all
	$(PYTHON) -m pytest -p no:cacheprovider -v tests/

# The randomised differential test of writable mounts, long (issue 8).
SOAK_OPS ?= 20000
soak: all
	DMSFS_SOAK_OPS=$(SOAK_OPS) $(PYTHON) -m pytest -p no:cacheprovider -v -s \
		tests/integration/test_write_diff.py

# BENCH=write (or any --only list of tests/bench/bench.py) runs a part.
bench: deps
	$(MAKE) all
	$(PYTHON) tests/bench/bench.py $(if $(BENCH),--only $(BENCH))

# The demo needs only what builds and runs dmsfs, and nginx: not the test
# and bench tools (packaging/install-deps.sh lists the groups).
demo:
	@sh packaging/install-deps.sh build runtime demo
	$(MAKE) all
	@sh packaging/demo.sh start

demo-stop:
	@sh packaging/demo.sh stop

# Everything the Debian package holds (packaging/debian/rules runs this).
# Existing config files are kept: they are the admin's.
MAN8 := packaging/man/dmsfs.8 packaging/man/dmsctl.8 \
        packaging/man/mount.fuse.dmsfs.8
MAN5 := packaging/man/dmsfs.conf.5 packaging/man/dmsfs-authdb.5
install: $(PROGS)
	install -d $(DESTDIR)$(prefix)/bin $(DESTDIR)$(mountdir) \
		$(DESTDIR)$(mandir)/man8 $(DESTDIR)$(mandir)/man5 \
		$(DESTDIR)$(unitdir) $(DESTDIR)$(sysconfdir)/dmsfs
	install -d -m 0700 $(DESTDIR)$(localstatedir)/cache/dmsfs
	install -m 0755 $(PROGS) $(DESTDIR)$(prefix)/bin/
	install -m 0755 packaging/mount.fuse.dmsfs $(DESTDIR)$(mountdir)/
	install -m 0644 $(MAN8) $(DESTDIR)$(mandir)/man8/
	install -m 0644 $(MAN5) $(DESTDIR)$(mandir)/man5/
	sed 's|/usr/bin/dmsfs|$(prefix)/bin/dmsfs|' packaging/dmsfs@.service \
		> $(DESTDIR)$(unitdir)/dmsfs@.service
	chmod 0644 $(DESTDIR)$(unitdir)/dmsfs@.service
	[ -e $(DESTDIR)$(sysconfdir)/dmsfs/dmsfs.conf ] || install -m 0644 \
		packaging/dmsfs.conf.sample $(DESTDIR)$(sysconfdir)/dmsfs/dmsfs.conf
	[ -e $(DESTDIR)$(sysconfdir)/dmsfs/authdb ] || install -m 0644 \
		packaging/authdb.sample $(DESTDIR)$(sysconfdir)/dmsfs/authdb

# The Debian package, built from a copy of the tree in build/deb (the
# debian/ folder lives in packaging/; nothing is written outside build/).
DEB_VERSION := $(shell awk -F'[()]' 'NR == 1 { print $$2 }' packaging/debian/changelog)
DEB_ARCH    := $(shell dpkg --print-architecture 2>/dev/null)
DEB         := $(B)/dmsfs_$(DEB_VERSION)_$(DEB_ARCH).deb
deb:
	@sh packaging/install-deps.sh deb
	rm -rf $(B)/deb
	mkdir -p $(B)/deb/dmsfs-$(VERSION)
	tar -cf - --exclude=./build --exclude=./.git --exclude=__pycache__ . | \
		tar -C $(B)/deb/dmsfs-$(VERSION) -xf -
	cp -r packaging/debian $(B)/deb/dmsfs-$(VERSION)/debian
	# Not the flags of this make (SANITIZER=...): a package is a plain build.
	cd $(B)/deb/dmsfs-$(VERSION) && env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS \
		dpkg-buildpackage -us -uc -b
	mv $(B)/deb/dmsfs_$(DEB_VERSION)_$(DEB_ARCH).deb $(DEB)
	lintian --fail-on error $(DEB)
	@echo "built $(DEB)"

# Builds the package, installs it, mounts from an fstab line and from the
# systemd unit's command lines, purges it (tests/integration/test_package.py).
test-package: deb
	$(PYTHON) -m pytest -p no:cacheprovider -v tests/integration/test_package.py

clean:
	rm -rf $(B)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
