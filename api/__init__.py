"""reev-api: the read-only HTTP API over the reev-ingest database."""
