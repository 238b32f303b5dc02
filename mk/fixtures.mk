# Fixture factory targets (included by the top-level Makefile).
#   make oracle-tools   trixie makedumpfile 1.7.6 + crash 8.0.6 (extracted, run through trixie's
#                       loader) and drgn (PyPI, venv) into the cache; wrappers in $(CRASHFLEET_TOOLS)
#   make kernels        Debian cloud kernels 5.10/6.1/6.12 with -dbg and headers into the cache
#   make fixtures       regenerate the whole corpus in $(CRASHFLEET_CACHE)/fixtures and refresh the
#                       committed subset in tests/fixtures/dumps
#   make fixtures-arm64 the arm64 cases (Debian 6.1 arm64 under qemu-system-aarch64; arm64
#                       makedumpfile under qemu-user) and their committed manifests/oracles
CRASHFLEET_CACHE ?= $(HOME)/.cache/crashfleet
CRASHFLEET_TOOLS := $(CRASHFLEET_CACHE)/tools/bin
FIXTURE_FACTORY := tests/fixtures/factory
export CRASHFLEET_CACHE

.PHONY: oracle-tools kernels fixtures fixtures-select fixtures-arm64

oracle-tools:
	@$(FIXTURE_FACTORY)/oracle-tools.sh

kernels:
	@$(FIXTURE_FACTORY)/fetch-kernels.sh

fixtures: oracle-tools kernels
	python3 $(FIXTURE_FACTORY)/factory.py all

fixtures-select:
	python3 $(FIXTURE_FACTORY)/factory.py select

ARM64_CASES := "uau 2 mkd-zlib" "null 2 mkd-flat" "bugon 2 mkd-zlib" "sysrq 2 mkd-zlib" "warn 2 mkd-zlib" \
                "uau 2 mkd-erase-ro"

fixtures-arm64: oracle-tools
	@for c in $(ARM64_CASES); do python3 $(FIXTURE_FACTORY)/arm64_case.py 6.1 $$c --select || exit 1; done
