"""Training executors: where a scheduled job's processes actually run (local worker pool, Kubernetes)."""
