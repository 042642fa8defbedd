"""privtune eval service (built by later issues; see ../../shared/DESIGN.md)."""
