"""Generated from the metric catalog: recording and alert rules, Grafana dashboards, the metric
docs, and ``cxpulse render`` that writes them. Offline tooling: the worker never imports it."""
