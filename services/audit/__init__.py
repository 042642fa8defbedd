"""privtune audit service (built by later issues; see ../../shared/DESIGN.md)."""
