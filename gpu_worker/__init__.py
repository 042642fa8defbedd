"""Training worker: recipes, checkpoints, resume (built by a later issue)."""
