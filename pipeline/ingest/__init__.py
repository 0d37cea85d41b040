"""The ingest path: validation structs, job registry, state coalescer, snapshot mirror."""
