"""``cxpulse report``: the weekly CX report, read from Prometheus. Offline tooling."""
