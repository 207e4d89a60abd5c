# ferry — the developer entry points. `make help` lists them.
SHELL := /bin/bash
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
FERRY := $(CURDIR)/$(BUILD)/node/ferry

.DEFAULT_GOAL := help
.PHONY: help deps build test test-unit test-sanitizers test-integration fuzz-smoke demo lint format clean lab-up lab-down

help: ## list the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  make %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## install the Debian packages needed to build and test (root)
	deploy/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

build: $(BUILD)/build.ninja ## configure and build everything (warnings are errors)
	cmake --build $(BUILD) -j $(JOBS)

test: build ## unit tests, sanitizer builds, a short libFuzzer run, then the privileged lab integration tests
	$(MAKE) test-unit
	$(MAKE) test-sanitizers
	$(MAKE) fuzz-smoke FUZZ_SECONDS=3
	$(MAKE) test-integration

test-unit: build ## unit tests only (fast, unprivileged)
	ctest --test-dir $(BUILD) -L unit --output-on-failure -j $(JOBS)

# The sanitized unit tests run in one process per core (tests/run_unit_shards.sh), not
# one per test: a sanitized test binary takes about a second to start.
test-sanitizers: ## unit tests under ASan+UBSan and under TSan
	cmake -S . -B $(BUILD)-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFERRY_SANITIZE=address
	cmake --build $(BUILD)-asan -j $(JOBS) --target ferry_unit_tests
	tests/run_unit_shards.sh $(BUILD)-asan $(JOBS)
	cmake -S . -B $(BUILD)-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFERRY_SANITIZE=thread
	cmake --build $(BUILD)-tsan -j $(JOBS) --target ferry_unit_tests
	TSAN_OPTIONS=halt_on_error=1 tests/run_unit_shards.sh $(BUILD)-tsan $(JOBS)

test-integration: build ## lab integration tests: real namespaces, Podman, runc, CRIU (root); the lab is taken down after
	status=0; ctest --test-dir $(BUILD) -L integration --output-on-failure || status=$$?; \
	  $(FERRY) lab down || status=1; exit $$status

FUZZ_SECONDS ?= 20
fuzz-smoke: ## build the libFuzzer targets with clang and run each briefly (FUZZ_SECONDS, default 20)
	tests/fuzz/smoke.sh $(BUILD)-fuzz $(FUZZ_SECONDS)

demo: build ## build, bring the lab up, move a live container from a to b, show the result
	FERRY=$(FERRY) deploy/demo.sh

lab-up: build ## bring the lab up (PROFILE=lan|cloud|wan|edge)
	$(FERRY) lab up --profile $${PROFILE:-lan}

lab-down: build ## remove every trace of the lab
	$(FERRY) lab down

lint: $(BUILD)/build.ninja ## clang-format check and clang-tidy over the sources
	deploy/lint.sh $(BUILD)

format: ## rewrite the sources with clang-format
	git ls-files '*.cc' '*.h' | xargs clang-format -i

clean: ## remove build directories
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-tsan $(BUILD)-fuzz
