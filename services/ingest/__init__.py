"""Dataset registration: the ingest service."""
