"""privtune services."""
