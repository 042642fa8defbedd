"""privtune audit service: every access recorded in a tamper-evident, per-tenant log.

The pure core (no I/O) lives in four modules:

* ``merkle`` — RFC 6962 Merkle tree hash, inclusion and consistency proofs, and
  the ``Frontier`` that keeps a growing tree's root in O(log n) hashes;
* ``chain`` — ``AuditRecord``, its canonical bytes and hash, and ``append``, which
  links each record to its predecessor;
* ``signed_heads`` — Ed25519-signed tree heads, key ids, PEM keys, and ``due``,
  the policy for when to sign the next head;
* ``verify`` — ``verify_log`` / ``verify_range``, which name the first record that
  was edited, deleted, reordered, inserted or truncated, or the head that was
  forged or no longer matches.

This serves the design's invariant 4: every access is audited, and a verifier
detects any edit, deletion or reordering of the log.
"""
