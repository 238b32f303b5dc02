# The chaos campaign (not part of `make test`): the real local stack, agents and analyzers
# as processes, faults injected while dumps arrive; writes its table into docs/reliability.md.
#   make chaos                        the default campaign
#   make chaos CHAOS_ARGS="--dumps 200 --faults 100 --hosts 20"   the issue's full size
CHAOS_ARGS ?=

.PHONY: chaos

chaos: setup
	nice -n 10 .venv/bin/python scripts/chaos.py $(CHAOS_ARGS) --write-docs
