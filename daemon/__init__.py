"""reev-ingestd: the ingestion daemon, the only writer of the reev-ingest database."""
