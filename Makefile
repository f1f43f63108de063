# Thin front-end over CMake/CTest.  The real build lives in CMakeLists.txt.
#
#   make / make all     configure (if needed) + build build/ (RelWithDebInfo)
#   make deps           check / install Debian packages (scripts/deps.sh)
#   make test           deps, then build+ctest: build/ (also under valgrind), build-asan/, build-tsan/
#   make test-aarch64   cross build build-aarch64/, tests under qemu-aarch64-static
#   make demo           build and run build/examples/demo
#   make bench          deps --bench (adds OpenSSL, Go), build, run bench/run.sh (its output
#                       kept in build/bench-output.txt: make docs draws the plot from it)
#   make docs           deps --docs (Sphinx, matplotlib, chromium), build/docs/html and
#                       build/docs/man (docs/tools/build_docs.py; warnings are errors)
#   make install        cmake --install build (PREFIX=/usr/local): library, headers,
#                       pkg-config files, and the man pages when Sphinx is installed
#   make clean          rm -rf build*/

JOBS           ?= 2
BUILD_TYPE     ?= RelWithDebInfo
# Sanitizer builds keep assert() enabled and are easier to debug.
SAN_BUILD_TYPE ?= Debug
CMAKE          ?= cmake
CTEST          ?= ctest
CTEST_FLAGS    ?= --output-on-failure -j$(JOBS) --no-tests=error

ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
TSAN_ENV := TSAN_OPTIONS=halt_on_error=1

# gcc 12's TSan can die with "FATAL: ThreadSanitizer: unexpected memory mapping"
# when the kernel uses high mmap randomisation; running without ASLR avoids it.
# Only used if setarch -R works here (it may be refused in some sandboxes).
NO_ASLR = $(shell setarch "$$(uname -m)" -R true >/dev/null 2>&1 && echo setarch "$$(uname -m)" -R)

# $(call configure,DIR,EXTRA CMAKE ARGS): configure DIR unless already configured.
# (Once configured, cmake --build re-runs CMake by itself when needed.)
define configure
	@test -f $(1)/Makefile || $(CMAKE) -S . -B $(1) -G "Unix Makefiles" $(2)
endef

# $(call build,DIR)  (--no-print-directory: no "Entering directory" noise from
# CMake's own sub-makes when run under this make)
define build
	$(CMAKE) --build $(1) --parallel $(JOBS) -- --no-print-directory
endef

.NOTPARALLEL:

.PHONY: all build deps deps-cross deps-bench deps-docs test test-normal test-asan test-tsan \
        test-aarch64 demo bench docs install clean

all: deps build

build:
	$(call configure,build,-DCMAKE_BUILD_TYPE=$(BUILD_TYPE))
	$(call build,build)

deps:
	@bash scripts/deps.sh

deps-cross:
	@bash scripts/deps.sh --cross

deps-bench:
	@bash scripts/deps.sh --bench

deps-docs:
	@bash scripts/deps.sh --docs

# Phases run in order (.NOTPARALLEL) and make stops at the first failure.  The
# TSan phase runs last, so the output ends with ctest's "N% tests passed" summary.
test: deps test-normal test-asan test-tsan

test-normal:
	@echo "==== ctrio test [1/3]: normal build (build/, $(BUILD_TYPE)), and each test program under valgrind ===="
	$(call configure,build,-DCMAKE_BUILD_TYPE=$(BUILD_TYPE))
	$(call build,build)
	$(CTEST) --test-dir build $(CTEST_FLAGS)

test-asan:
	@echo "==== ctrio test [2/3]: ASan+UBSan build (build-asan/, $(SAN_BUILD_TYPE)) ===="
	$(call configure,build-asan,-DCMAKE_BUILD_TYPE=$(SAN_BUILD_TYPE) -DCTRIO_SANITIZE=address)
	$(call build,build-asan)
	$(ASAN_ENV) $(CTEST) --test-dir build-asan $(CTEST_FLAGS)

test-tsan:
	@echo "==== ctrio test [3/3]: TSan build, 'threads' tests only (build-tsan/, $(SAN_BUILD_TYPE)) ===="
	$(call configure,build-tsan,-DCMAKE_BUILD_TYPE=$(SAN_BUILD_TYPE) -DCTRIO_SANITIZE=thread)
	$(call build,build-tsan)
	$(TSAN_ENV) $(NO_ASLR) $(CTEST) --test-dir build-tsan -L threads $(CTEST_FLAGS)

test-aarch64: deps-cross
	@echo "==== ctrio test: aarch64 cross build under qemu (build-aarch64/, $(BUILD_TYPE)) ===="
	$(call configure,build-aarch64,-DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DCMAKE_TOOLCHAIN_FILE=$(CURDIR)/cmake/aarch64-linux-gnu.cmake)
	$(call build,build-aarch64)
	$(CTEST) --test-dir build-aarch64 $(CTEST_FLAGS)

demo: deps build
	@if [ -x build/examples/demo ]; then \
	    ./build/examples/demo; \
	else \
	    echo "demo not built yet"; exit 1; \
	fi

bench: deps-bench build
	@if [ -f bench/run.sh ]; then \
	    CTRIO_BUILD_DIR=$(CURDIR)/build bash -o pipefail -c \
	        'bash bench/run.sh | tee build/bench-output.txt'; \
	else \
	    echo "bench/run.sh not written yet"; exit 1; \
	fi

docs: deps-docs
	$(call configure,build,-DCMAKE_BUILD_TYPE=$(BUILD_TYPE))
	$(CMAKE) --build build --target docs -- --no-print-directory
	@echo "ctrio docs: build/docs/html/index.html, build/docs/man/*.3"

PREFIX ?= /usr/local
install: build
	$(CMAKE) --install build --prefix $(PREFIX)

clean:
	rm -rf build*/
