# Short commands over CMake. Every target installs missing Debian packages first.
BUILD ?= build
SAN_BUILD ?= build-sanitize
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build demo test test-sanitize fuzz bench fixtures install clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

demo: build
	@bash scripts/demo.sh $(BUILD)/linnx

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-sanitize: deps
	@cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DLINNX_SANITIZE=ON >/dev/null
	@cmake --build $(SAN_BUILD) -j $(JOBS)
	@cd $(SAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 LINNX_FAULT_STRIDE=4 ctest --output-on-failure -j $(JOBS)

# libFuzzer (clang, ASan + UBSan): every tests/fuzz/fuzz_*.c (spec parser, params pipeline,
# checkpoint readers) against the library and the CLI's sources, all instrumented, each run
# FUZZ_SECONDS on its seeds (tests/fuzz/seeds/<name>/); fails on any finding (scripts/fuzz.sh).
fuzz:
	@bash scripts/install-deps.sh --fuzz
	@bash scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

bench: build
	@bash scripts/install-deps.sh --bench
	@bash scripts/bench.sh $(BUILD)

# Regenerate every checked-in fixture from ../shared/spec/jax_random_ref.py (the tests never run
# Python; this is for when a generator changes).
# The generators run on Debian's own Python (/usr/bin/python3) with python3-numpy and
# python3-msgpack, which `install-deps.sh --fixtures` installs.
fixtures:
	@bash scripts/install-deps.sh --fixtures
	@for g in scripts/gen_*_fixtures.py; do /usr/bin/python3 $$g || exit 1; done

install: build
	@cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(FUZZ_BUILD)
