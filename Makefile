# otad: over-the-air update server for ESP32 fleets
#
#   make                 build build/otad and build/otactl
#   make run             install missing packages, build, start otad here
#   make test            install missing packages, build, run every test
#   make SANITIZE=address,undefined test   the same, sanitized (build/san)
#   make install PREFIX=/usr DESTDIR=...
#   make lint | bench | fuzz | clean

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
SYSCONFDIR ?= /etc
UNITDIR ?= /lib/systemd/system

CC      ?= cc
PKGS    := libmicrohttpd gnutls libcrypto sqlite3 libpq jansson libmosquitto \
	   libsystemd libdivsufsort
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	   -Wpointer-arith -Wformat=2 -Wwrite-strings -Wvla \
	   -Wno-missing-field-initializers
override CFLAGS += -std=c11 $(WARN) -D_GNU_SOURCE -Iinclude \
	   -DOTAD_CONF='"$(SYSCONFDIR)/otad/otad.conf"'

ifeq ($(SANITIZE),)
BUILD   := build
else
BUILD   := build/san
override CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer \
	   -fno-sanitize-recover=all
override LDFLAGS += -fsanitize=$(SANITIZE)
endif

# sanitized runs: also catch use of a returned function's stack
export ASAN_OPTIONS ?= detect_stack_use_after_return=1
export UBSAN_OPTIONS ?= print_stacktrace=1

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# otactl's client for a remote otad
CURL_LIBS  = $(shell pkg-config --libs libcurl 2>/dev/null)

# every module but the two mains goes into one static library; otactl's
# own modules (cli_*.c) go into otactl alone
CLI_SRCS := src/otactl.c $(wildcard src/cli_*.c)
CLI_OBJS := $(CLI_SRCS:src/%.c=$(BUILD)/obj/%.o)
LIB_SRCS := $(filter-out src/main.c $(CLI_SRCS),$(wildcard src/*.c \
	src/registry/*.c))
LIB_OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/schema.o \
	$(BUILD)/obj/console_files.o
SCHEMA_SQLITE := $(sort $(wildcard schema/sqlite/*.sql))
SCHEMA_PG     := $(sort $(wildcard schema/postgresql/*.sql))
CONSOLE  := $(sort $(wildcard src/console/*.html src/console/*.css \
	src/console/*.js))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

# Debian packages: to build, to test, to benchmark
DEPS_BUILD := gcc make pkg-config libmicrohttpd-dev libgnutls28-dev libssl-dev \
	libsqlite3-dev libpq-dev libjansson-dev libmosquitto-dev libsystemd-dev \
	libdivsufsort-dev libcurl4-openssl-dev
DEPS_TEST  := libcmocka-dev python3 python3-pytest sqlite3 openssl curl \
	cppcheck clang libclang-rt-14-dev mosquitto mosquitto-clients iproute2 \
	chromium chromium-driver python3-selenium postgresql python3-psycopg2 \
	haproxy nginx-light
DEPS_BENCH := wrk bc bsdiff xdelta3 time

.PHONY: all run test unit integration integration-pg deps deps-test deps-bench lint \
	install clean bench fuzz

all: $(BUILD)/otad $(BUILD)/otactl

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -c -o $@ $<

# schema/<dialect>/*.sql compiled in, so an installed otad needs no
# schema files: each dialect's migrations as an array of C strings
$(BUILD)/obj/schema.c: $(SCHEMA_SQLITE) $(SCHEMA_PG) Makefile
	@mkdir -p $(dir $@)
	@{ emit() { \
	     name=$$1; shift; echo "const char *const $${name}s[] = {"; \
	     for f in "$$@"; do \
	       sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $$f; \
	       echo ','; \
	     done; \
	     echo '};'; echo "const unsigned $${name}_count = $$#;"; \
	   }; \
	   echo '/* generated from the schema directory by the Makefile */'; \
	   emit schema_migration $(SCHEMA_SQLITE); \
	   emit pg_migration $(SCHEMA_PG); \
	 } > $@

$(BUILD)/obj/schema.o: $(BUILD)/obj/schema.c
	$(CC) $(CFLAGS) -c -o $@ $<

# the web console's files compiled in the same way, each one C string
$(BUILD)/obj/console_files.c: $(CONSOLE) Makefile
	@mkdir -p $(dir $@)
	@{ echo '/* generated from src/console by the Makefile */'; \
	   echo '#include "console.h"'; \
	   i=0; for f in $(CONSOLE); do \
	     echo "static const char file$$i[] ="; \
	     sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $$f; \
	     echo ';'; i=$$((i + 1)); \
	   done; \
	   echo 'const struct console_file console_files[] = {'; \
	   i=0; for f in $(CONSOLE); do \
	     echo "{\"$$(basename $$f)\", file$$i, sizeof(file$$i) - 1},"; \
	     i=$$((i + 1)); \
	   done; \
	   echo '};'; \
	   echo 'const size_t console_file_count = $(words $(CONSOLE));'; \
	 } > $@

$(BUILD)/obj/console_files.o: $(BUILD)/obj/console_files.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/libotad.a: $(LIB_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/otad: $(BUILD)/obj/main.o $(BUILD)/libotad.a
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lpthread

$(BUILD)/otactl: $(CLI_OBJS) $(BUILD)/libotad.a
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CURL_LIBS) -lpthread

# tests must build without a warning: a mismatched call there is silent
$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libotad.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Werror $(PKG_CFLAGS) -o $@ $< $(BUILD)/libotad.a \
		$(LDFLAGS) $(PKG_LIBS) -lcmocka -lpthread

# the writer alone, against SQLite's own statements (make bench)
$(BUILD)/bench/writer: tests/bench/writer.c $(BUILD)/libotad.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Werror $(PKG_CFLAGS) -o $@ $< $(BUILD)/libotad.a \
		$(LDFLAGS) $(PKG_LIBS) -lpthread

-include $(wildcard $(BUILD)/obj/*.d $(BUILD)/obj/registry/*.d)

# Install what is missing: apt-get as root, otherwise print the line to run.
define need
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' \
	    || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing \
	      || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	           apt-get install -y -q $$missing; } || exit 1; \
	  else \
	    echo "missing Debian packages; run:"; \
	    echo "  sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
endef

deps:
	$(call need,$(DEPS_BUILD))
deps-test: deps
	$(call need,$(DEPS_TEST))
deps-bench: deps-test
	$(call need,$(DEPS_BENCH))

# A local state directory and a config that points at it.
run: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p state
	@sed -e 's|^state_dir.*|state_dir = $(CURDIR)/state|' conf/otad.conf \
		> state/otad.conf
	@echo "otactl: OTAD_CONF=$(CURDIR)/state/otad.conf $(BUILD)/otactl ..."
	exec $(BUILD)/otad -c state/otad.conf

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; SHARED=$(CURDIR)/../shared $$t; done

# the slowest tests are named at the end, to keep the suite within budget
integration: all
	OTAD_BUILD=$(CURDIR)/$(BUILD) SHARED=$(CURDIR)/../shared \
		/usr/bin/python3 -m pytest -q --durations=15 tests/integration

# the same suite with the registry in a real PostgreSQL the tests start
integration-pg: all
	OTAD_TEST_BACKEND=postgresql OTAD_BUILD=$(CURDIR)/$(BUILD) \
		SHARED=$(CURDIR)/../shared \
		/usr/bin/python3 -m pytest -q --durations=15 tests/integration

test: deps-test
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration
	@if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory integration-pg; \
	else echo "integration-pg: skipped, PostgreSQL is not installed"; fi
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_SECONDS)

# libFuzzer targets (clang), each run for FUZZ_SECONDS from a seed corpus
# of the real images; make test runs them briefly.
FUZZ_SECONDS ?= 20
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
build/fuzz/%: tests/fuzz/%.c $(LIB_SRCS) $(BUILD)/obj/schema.c
	@mkdir -p $(dir $@)
	clang -g -O1 -std=c11 -D_GNU_SOURCE -Iinclude \
		-fsanitize=fuzzer,address,undefined -o $@ $< \
		$(FUZZ_SRCS_$(notdir $@)) -lcrypto -ldivsufsort
# what each target links
FUZZ_SRCS_fuzz_espimg := src/espimg.c
FUZZ_SRCS_fuzz_delta := src/delta.c src/heatshrink.c src/otad.c
FUZZ_SRCS_fuzz_semver := src/semver.c

fuzz: $(FUZZ_TARGETS)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  corpus=build/fuzz/corpus-$$(basename $$t); mkdir -p $$corpus; \
	  case $$t in \
	  *delta) cp -n ../shared/firmware/delta-vectors/esp_delta_ota/*patch.bin \
	      $$corpus/ 2>/dev/null || true ;; \
	  *semver) cp -n tests/fuzz/semver-seeds/* $$corpus/ ;; \
	  *) cp -n ../shared/firmware/esp-idf/*.bin $$corpus/ 2>/dev/null || true ;; \
	  esac; \
	  echo "== $$t ($(FUZZ_SECONDS) s)"; \
	  $$t -max_total_time=$(FUZZ_SECONDS) -max_len=262144 \
	    -print_final_stats=1 $$corpus 2>&1 | tail -n 4; \
	done

# each script prints its figures; the table of them all comes last
bench: deps-bench all $(BUILD)/bench/writer
	@rm -f $(BUILD)/bench.md
	BENCH_TABLE=$(CURDIR)/$(BUILD)/bench.md tests/bench/check.sh $(BUILD)
	BENCH_TABLE=$(CURDIR)/$(BUILD)/bench.md tests/bench/writer.sh $(BUILD)
	BENCH_TABLE=$(CURDIR)/$(BUILD)/bench.md tests/bench/tls.sh $(BUILD)
	BENCH_TABLE=$(CURDIR)/$(BUILD)/bench.md tests/bench/rollout.sh $(BUILD)
	BENCH_TABLE=$(CURDIR)/$(BUILD)/bench.md tests/bench/delta.sh $(BUILD)
	BENCH_TABLE=$(CURDIR)/$(BUILD)/bench.md tests/bench/postgresql.sh $(BUILD)
	@echo; echo "make bench, $$(date -u +%F), $$(nproc) cores, otad $$(git rev-parse --short HEAD 2>/dev/null)"
	@echo "| figure | otad | baseline | ratio | bar |"; echo "|---|---|---|---|---|"
	@cat $(BUILD)/bench.md

lint:
	@tests/lint.sh

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) \
		$(DESTDIR)$(SYSCONFDIR)/otad $(DESTDIR)$(UNITDIR)
	install -m 0755 $(BUILD)/otad $(DESTDIR)$(SBINDIR)/otad
	install -m 0755 $(BUILD)/otactl $(DESTDIR)$(BINDIR)/otactl
	[ -e $(DESTDIR)$(SYSCONFDIR)/otad/otad.conf ] || \
		install -m 0640 conf/otad.conf $(DESTDIR)$(SYSCONFDIR)/otad/otad.conf
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		systemd/otad.service > $(DESTDIR)$(UNITDIR)/otad.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/otad.service

clean:
	rm -rf build
