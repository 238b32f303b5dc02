"""analyzer: the analyzer service — the worker that turns a crash-reported event into a stored,
signed crash (:mod:`analyzer.worker`), the consumer loop around it (:mod:`analyzer.service`)
and its metrics (:mod:`analyzer.metrics`). Wired from settings by ``crashfleet.wiring``."""
