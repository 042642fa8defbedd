"""Shared kernel: bus, envelope codec, outbox, stores, identity, gRPC server."""
