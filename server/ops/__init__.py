"""At the side of the pipeline: metrics, the HTTP probes and debug endpoint, logging."""
