"""privtune deploy service (built by later issues; see ../../shared/DESIGN.md)."""
