"""What runs the pipeline: the Kafka sources and sink, state recovery, the worker loop, the
Prometheus collector and the HTTP probes. The only layer that talks to Kafka or serves scrapes."""
