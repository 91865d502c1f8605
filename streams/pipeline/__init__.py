"""The pure core: event-time windows, running aggregates, the exactly-once partition states and
the batch plan. Plain Python over ``_ms`` integers: no Kafka client, no Prometheus, no Faust."""
