# libaio-compat: the libaio API on io_uring or native AIO.

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DESTDIR ?=

VERSION := 1.0.0
SONAME := libaio-compat.so.1

CC ?= cc
CFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
BASE_CFLAGS := -std=gnu17 -D_GNU_SOURCE -Iinclude $(WARN)
ifeq ($(SANITIZE),1)
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
endif
# Shared objects name every library they use.
LIB_ZDEFS := -Wl,-z,defs
# ThreadSanitizer (clang's): the library and every program built with it.
# Its runtime is linked into each program, which exports it to the library
# (clang 14's shared runtime crashes at startup), so the libraries leave its
# symbols undefined. A race stops the program, which fails its check.
ifeq ($(TSAN),1)
CC := clang
SAN := -fsanitize=thread -fno-omit-frame-pointer
LIB_ZDEFS :=
export TSAN_OPTIONS := halt_on_error=1 second_deadlock_stack=1 $(TSAN_OPTIONS)
endif
ALL_CFLAGS := $(BASE_CFLAGS) $(CFLAGS) $(SAN) $(CPPFLAGS)
ALL_LDFLAGS := $(LDFLAGS) $(SAN)

LIB_SRCS := $(wildcard lib/*.c)
LIB_OBJS := $(LIB_SRCS:.c=.o)
LIB_SO := lib/libaio-compat.so
LIB_A := lib/libaio-compat.a
LIB_PC := lib/aio-compat.pc

TEST_UTIL := tests/util.o
TEST_SRCS := $(filter-out tests/util.c,$(wildcard tests/test_*.c))
TESTS := $(TEST_SRCS:.c=)
# The suites once more, linked with the real libaio instead of the library:
# the reference whose results they assert. Not those of the library's own
# rules (honest fsync, single issuer) or of the POSIX face.
LIBRARY_ONLY_TESTS := tests/test_durability tests/test_fsync_order tests/test_single_issuer \
	tests/test_posix tests/test_unload tests/test_alloc
LIBAIO_TESTS := $(patsubst tests/%,tests/libaio/%,$(filter-out $(LIBRARY_ONLY_TESTS),$(TESTS)))
EXAMPLE_SRCS := $(wildcard examples/*.c)
EXAMPLES := $(EXAMPLE_SRCS:.c=)
BENCH := tools/aio-compat-bench
BENCH_SRCS := tools/aio-compat-bench.c $(wildcard tools/bench-*.c)
# Preloaded under fio by tools/fio-compare.sh, never sanitized; not installed.
SHAREABLE_RING := tools/fio-shareable-ring.so

# Programs link against the freshly built library, found through the rpath.
PROG_LDFLAGS := $(ALL_LDFLAGS) -Llib -Wl,-rpath,'$$ORIGIN/../lib'
PROG_LIBS := -laio-compat -luring -lpthread
POSIX_LIBS := -laio-compat-posix -Wl,--no-as-needed -laio-compat -Wl,--as-needed
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null)

# The POSIX face: <aio.h> on the same engine (posix/).
POSIX_SRCS := $(wildcard posix/*.c)
POSIX_OBJS := $(POSIX_SRCS:.c=.o)
POSIX_SO := lib/libaio-compat-posix.so
POSIX_SONAME := libaio-compat-posix.so.1
POSIX_A := lib/libaio-compat-posix.a
POSIX_PC := lib/aio-compat-posix.pc

FUZZ_CC ?= clang
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
ifeq ($(VALGRIND),1)
export CHECK_WRAPPER := valgrind -q --error-exitcode=1 --suppressions=tests/valgrind.supp
export CK_TIMEOUT_MULTIPLIER := 10
endif

.PHONY: all deps check check-modes run bench bench-clients bench-qemu install clean format deb fuzz posix-compare

all: $(LIB_SO).1 $(LIB_SO) $(LIB_A) $(LIB_PC) $(POSIX_SO).1 $(POSIX_SO) $(POSIX_A) $(POSIX_PC) \
	$(EXAMPLES) $(SHAREABLE_RING)

lib/%.o: lib/%.c lib/*.h include/aio-compat.h
	$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -c -o $@ $<

# -z nodelete: dlclose() leaves the library mapped, as its threads, which
# end only once idle, and its thread-exit destructor may still run its code.
$(LIB_SO).1: $(LIB_OBJS) lib/libaio-compat.map
	$(CC) $(ALL_CFLAGS) -shared -Wl,-soname,$(SONAME) \
		-Wl,--version-script=lib/libaio-compat.map $(LIB_ZDEFS) -Wl,-z,nodelete \
		-o $@ $(LIB_OBJS) $(ALL_LDFLAGS) -luring -lpthread

$(LIB_SO): $(LIB_SO).1
	ln -sf libaio-compat.so.1 $@

# The syscall(2) interposer is the shared library's alone: in a static
# program it would take the place of glibc's.
$(LIB_A): $(filter-out lib/syscall.o,$(LIB_OBJS))
	rm -f $@
	$(AR) rcs $@ $^

$(LIB_PC): lib/aio-compat.pc.in Makefile
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
		-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

posix/%.o: posix/%.c posix/*.h lib/shared.h include/aio-compat.h
	$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -c -o $@ $<

# Linked against libaio-compat.so.1 (NEEDED); programs in the tree load
# that one through their own rpath, so it is named explicitly for them.
# -z nodelete for its completion thread, as above.
$(POSIX_SO).1: $(POSIX_OBJS) posix/libaio-compat-posix.map $(LIB_SO)
	$(CC) $(ALL_CFLAGS) -shared -Wl,-soname,$(POSIX_SONAME) \
		-Wl,--version-script=posix/libaio-compat-posix.map $(LIB_ZDEFS) -Wl,-z,nodelete \
		-o $@ $(POSIX_OBJS) $(ALL_LDFLAGS) -Llib -laio-compat -lpthread

$(POSIX_SO): $(POSIX_SO).1
	ln -sf $(POSIX_SONAME) $@

$(POSIX_A): $(POSIX_OBJS)
	rm -f $@
	$(AR) rcs $@ $^

$(POSIX_PC): posix/aio-compat-posix.pc.in Makefile
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
		-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

examples/%: examples/%.c $(LIB_SO)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(PROG_LDFLAGS) $(PROG_LIBS)

# Installed as it is built: no rpath; make bench and check point it at lib/.
$(BENCH): $(BENCH_SRCS) tools/bench.h include/aio-compat.h $(LIB_SO)
	$(CC) $(ALL_CFLAGS) -o $@ $(BENCH_SRCS) $(ALL_LDFLAGS) -Llib $(PROG_LIBS) -ldl

$(SHAREABLE_RING): tools/fio-shareable-ring.c
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(CPPFLAGS) -fPIC -shared -o $@ $< $(LDFLAGS) -ldl

tests/%.o: tests/%.c tests/*.h include/aio-compat.h
	$(CC) $(ALL_CFLAGS) $(shell pkg-config --cflags check 2>/dev/null) -c -o $@ $<

tests/test_%: tests/test_%.o $(TEST_UTIL) $(LIB_SO)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(TEST_UTIL) $(PROG_LDFLAGS) $(PROG_LIBS) $(CHECK_LIBS)

tests/libaio/test_%: tests/test_%.o $(TEST_UTIL)
	@mkdir -p tests/libaio
	$(CC) $(ALL_CFLAGS) -o $@ $< $(TEST_UTIL) $(ALL_LDFLAGS) -laio -luring -lpthread $(CHECK_LIBS)

# test_posix runs on the POSIX face; the same object without it runs on glibc's.
tests/test_posix: tests/test_posix.o $(TEST_UTIL) $(LIB_SO) $(POSIX_SO)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(TEST_UTIL) $(PROG_LDFLAGS) $(POSIX_LIBS) $(PROG_LIBS) $(CHECK_LIBS)

# dlopen()s the libraries of this build and dlclose()s them: not linked with them.
tests/unload-client: tests/unload-client.c include/aio-compat.h
	$(CC) $(ALL_CFLAGS) -o $@ $< $(ALL_LDFLAGS) -ldl -lpthread

tests/test_unload: tests/unload-client $(POSIX_SO).1

# Fails the libraries' allocations in turn: the POSIX face is among them.
tests/test_alloc: tests/test_alloc.o $(TEST_UTIL) $(LIB_SO) $(POSIX_SO)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(TEST_UTIL) $(PROG_LDFLAGS) $(POSIX_LIBS) $(PROG_LIBS) $(CHECK_LIBS)

tests/test_posix-glibc: tests/test_posix.o $(TEST_UTIL) $(LIB_SO)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(TEST_UTIL) $(PROG_LDFLAGS) $(PROG_LIBS) $(CHECK_LIBS)

tests/posix-compare: tests/posix-compare.c $(POSIX_SO)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(PROG_LDFLAGS) $(POSIX_LIBS)

tests/posix-compare-glibc: tests/posix-compare.c
	$(CC) $(ALL_CFLAGS) -o $@ $< $(ALL_LDFLAGS)

# Where glibc's <aio.h> answers differently: a table, then the suite on glibc.
posix-compare: tests/posix-compare tests/posix-compare-glibc tests/test_posix-glibc
	sh tests/posix-compare.sh
	-AIO_COMPAT_BACKEND=uring ./tests/test_posix-glibc

tests/diff-libaio: tests/diff-libaio.c $(LIB_SO)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(PROG_LDFLAGS) $(PROG_LIBS) -ldl

# The fuzzer links the library's sources, built with its instrumentation.
fuzz: tests/fuzz_submit

tests/fuzz_submit: tests/fuzz_submit.c $(LIB_SRCS) lib/*.h include/aio-compat.h
	$(FUZZ_CC) $(BASE_CFLAGS) $(FUZZ_FLAGS) -o $@ tests/fuzz_submit.c $(LIB_SRCS) -luring -lpthread

# Installs what Build-Depends of debian/control lists and this machine lacks.
deps:
	@sh tools/deps.sh

# The real clients: preload.sh (a program linked with -laio, fio, sysbench,
# thin-provisioning-tools, stressapptest, LVM) and mariadb.sh, MariaDB's
# InnoDB and mariabackup. The latter is a script of its own rather than a
# part of preload.sh: it runs servers, needs mariadb-server, has a summary
# line of its own, and says SKIP where it cannot run.
check: deps
	$(MAKE) all $(TESTS) $(LIBAIO_TESTS) $(BENCH) tests/diff-libaio
	sh tests/run.sh $(TESTS) $(LIBAIO_TESTS)
	for b in native uring auto; do AIO_COMPAT_BACKEND=$$b ./tests/diff-libaio -s 1 -n 500 -d /var/tmp || exit 1; done
ifeq ($(TSAN),1)
	@echo "SKIP: tests/preload.sh, mariadb.sh, qemu.sh: under TSAN (ThreadSanitizer must be built into the programs they preload the library under)"
else
	sh tests/preload.sh
	sh tests/mariadb.sh
	sh tests/qemu.sh
endif
	@out=$$(LD_LIBRARY_PATH=lib ./$(BENCH) --quick) || { echo "$$out"; exit 1; }; \
	echo "$$out" | sed -n 's/^  *\([^ ]*\) *unavailable: /SKIP: aio-compat-bench --quick, \1: /p' | sort -u
	@echo "aio-compat-bench --quick: every contender that ran checked its results"
ifneq ($(VALGRIND)$(SANITIZE)$(TSAN),)
	@echo "SKIP: fuzz run: under VALGRIND, SANITIZE or TSAN (the fuzzer has its own sanitizers)"
else
	if command -v $(FUZZ_CC) > /dev/null; then $(MAKE) fuzz && FUZZ_SECONDS=20 sh tests/fuzz.sh; \
	else sh tests/skip.sh clang "fuzz run: $(FUZZ_CC) is missing"; fi
endif

# The suites where this kernel cannot take them: io_uring set up as Linux
# 5.10 would let the library (no SUBMIT_ALL, COOP_TASKRUN, DEFER_TASKRUN),
# and no usable io_uring, where auto must be native AIO.
check-modes: deps
	$(MAKE) all $(TESTS)
	@echo "== io_uring as on Linux 5.10 (AIO_COMPAT_URING_EMULATE=5.10)"
	AIO_COMPAT_URING_EMULATE=5.10 BACKENDS=uring sh tests/run.sh $(TESTS)
	@echo "== no io_uring, backend auto (AIO_COMPAT_URING_EMULATE=none)"
	AIO_COMPAT_URING_EMULATE=none BACKENDS=auto sh tests/run.sh $(TESTS)

bench: deps
	$(MAKE) all $(BENCH)
	LD_LIBRARY_PATH=lib ./$(BENCH)

# QEMU's qemu-img bench on real libaio, QEMU's io_uring and the library's
# backends, in alternating rounds (a few minutes).
bench-qemu: deps
	$(MAKE) $(LIB_SO).1
	sh tools/bench-qemu.sh

# The real clients: QEMU (as bench-qemu), then sysbench oltp_read_write on
# MariaDB, the real libaio against the library on each backend, in
# alternating rounds (BENCHMARKS.md).
bench-clients: deps
	$(MAKE) $(LIB_SO).1
	sh tools/bench-qemu.sh
	sh tools/bench-clients.sh

run: deps
	$(MAKE) all
	./examples/wal-demo

install: all $(BENCH)
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)
	install -m 0644 $(LIB_SO).1 $(DESTDIR)$(LIBDIR)/libaio-compat.so.$(VERSION)
	ln -sf libaio-compat.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libaio-compat.so
	install -m 0644 $(LIB_A) $(DESTDIR)$(LIBDIR)/
	install -m 0644 $(LIB_PC) $(POSIX_PC) $(DESTDIR)$(LIBDIR)/pkgconfig/
	install -m 0644 $(POSIX_SO).1 $(DESTDIR)$(LIBDIR)/libaio-compat-posix.so.$(VERSION)
	ln -sf libaio-compat-posix.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(POSIX_SONAME)
	ln -sf $(POSIX_SONAME) $(DESTDIR)$(LIBDIR)/libaio-compat-posix.so
	install -m 0644 $(POSIX_A) $(DESTDIR)$(LIBDIR)/
	install -m 0644 include/aio-compat.h $(DESTDIR)$(INCLUDEDIR)/
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3
	install -m 0755 tools/aio-compat-run $(BENCH) $(DESTDIR)$(BINDIR)/
	install -m 0644 man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 man/*.3 $(DESTDIR)$(MANDIR)/man3/
	install -d $(DESTDIR)$(MANDIR)/man7
	install -m 0644 man/*.7 $(DESTDIR)$(MANDIR)/man7/

format:
	clang-format -i lib/*.c lib/*.h include/*.h posix/*.c posix/*.h tests/*.c tests/*.h \
		examples/*.c tools/*.c tools/*.h

clean:
	rm -f lib/*.o lib/*.so* lib/*.a $(LIB_PC) $(POSIX_PC) posix/*.o tests/*.o $(TESTS) $(EXAMPLES)
	rm -f tests/test_posix-glibc
	rm -rf tests/libaio
	rm -f tools/*.o $(BENCH) tests/raw-syscall-client-linked $(SHAREABLE_RING) $(filter-out tests/util,$(basename $(wildcard tests/*.c)))

# The Debian packages, built into the parent directory as dpkg-buildpackage
# does (their build runs make check, and the tree is cleaned after), then
# checked by lintian.
deb:
	@sh tools/deps.sh lintian
	dpkg-buildpackage -us -uc -b --post-clean
	lintian --fail-on error,warning \
		../libaio-compat_$$(dpkg-parsechangelog -S Version)_$$(dpkg-architecture -qDEB_HOST_ARCH).changes
