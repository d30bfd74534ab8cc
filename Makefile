# The two commands of the README: `make demo` and `make test`.
BUILD ?= build
JOBS ?= $(shell nproc)
export CCACHE_SLOPPINESS = pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_DIR ?= $(HOME)/.cache/ccache
CMAKE_GEN := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")

.PHONY: all setup build demo test asan clean

all: build

setup:
	@./scripts/setup.sh

$(BUILD)/build.ninja $(BUILD)/Makefile:
	cmake -S . -B $(BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Release

build: setup $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	$(BUILD)/catq demo

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

# Bad-input tests under AddressSanitizer + UndefinedBehaviorSanitizer (also run by CI).
asan: setup
	cmake -S . -B build-asan $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCATQ_SANITIZE=ON
	cmake --build build-asan -j $(JOBS) --target catq_tests catq_cli
	ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 OMP_NUM_THREADS=1 \
	  build-asan/catq_tests --gtest_filter='BadInput*'

clean:
	rm -rf $(BUILD) build-asan
