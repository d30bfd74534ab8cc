# The two commands of the README: `make demo` and `make test`.
BUILD ?= build
JOBS ?= $(shell nproc)
export CCACHE_SLOPPINESS = pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_DIR ?= $(HOME)/.cache/ccache
# Paths relative to the checkout: a second clone or worktree reuses the cache.
export CCACHE_BASEDIR ?= $(CURDIR)
CMAKE_GEN := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")

.PHONY: all setup build demo test asan asan-all tsan fuzz clean

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
	  build-asan/catq_tests --gtest_filter='BadInput*:LeanLlama.BadInputGetsClearErrors:IntGemm.BadInputsAreRejected:MixedPrecision.BadInput'

# The WHOLE suite under ASan + UBSan, each test suite in its own process (bench/asan_all.sh). Not in CI: hours, not
# minutes. ASAN_ALL_FILTER narrows it (a gtest filter).
asan-all: setup
	cmake -S . -B build-asan $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCATQ_SANITIZE=ON
	cmake --build build-asan -j $(JOBS) --target catq_tests catq_cli
	./bench/asan_all.sh build-asan '$(or $(ASAN_ALL_FILTER),*)'

# The threaded paths (thread pool, lean runtime GEMM / attention / elementwise passes, at 1-3 threads) under
# ThreadSanitizer. Not in CI (a second full sanitizer build does not fit its time limit): run before changing them.
# libtorch's own OpenMP threads are not instrumented, so they are kept to one.
tsan: setup
	cmake -S . -B build-tsan $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCATQ_TSAN=ON
	cmake --build build-tsan -j $(JOBS) --target catq_tests
	TSAN_OPTIONS=halt_on_error=1 OMP_NUM_THREADS=1 \
	  build-tsan/catq_tests --gtest_filter='ThreadPool.*:BlockMatmul.*:VecOps.*:LeanLlama.*'

# libFuzzer targets over every file reader (clang 14, -fsanitize=fuzzer,address,undefined; fuzz/CMakeLists.txt
# explains why only the reader layers are built) and their seed corpora. bench/fuzz.sh SECONDS runs them.
fuzz:
	./scripts/setup.sh --fuzz
	cmake -S fuzz -B build-fuzz $(CMAKE_GEN) -DCMAKE_CXX_COMPILER=clang++-14
	cmake --build build-fuzz -j $(JOBS)
	./fuzz/make_corpus.sh build-fuzz

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz
