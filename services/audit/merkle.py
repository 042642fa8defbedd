"""RFC 6962 (Certificate Transparency) Merkle tree hashing, proofs and their verification.

The tree over ``n`` leaves is the Merkle Tree Hash of RFC 6962 §2.1 (RFC 9162
§2.1.1): a leaf hashes as ``sha256(0x00 || data)``, an interior node as
``sha256(0x01 || left || right)``, the empty tree as ``sha256("")``, and a tree of
``n > 1`` leaves splits at ``k``, the largest power of two below ``n``. The 0x00 /
0x01 prefixes keep a leaf from ever passing for an interior node.

Leaves here are the raw leaf *data* (the audit log uses each record's 32-byte
hash); every function hashes them itself. Proof generation takes all leaves in
memory and costs O(n) hashes; verification costs O(log n). ``Frontier`` keeps a
growing tree's root in O(log n) space, for appending and for verifying a range
of a log that starts after leaves the verifier never sees.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

HASH_BYTES = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """``sha256(0x00 || data)``, the hash of one leaf."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``sha256(0x01 || left || right)``, the hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtree_root(hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH of the leaves whose leaf hashes are ``hashes[lo:hi]`` (hi > lo)."""
    if hi - lo == 1:
        return hashes[lo]
    k = _split(hi - lo)
    return node_hash(_subtree_root(hashes, lo, lo + k), _subtree_root(hashes, lo + k, hi))


def root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash of ``leaves`` (``EMPTY_ROOT`` for none)."""
    return frontier_of(leaves).root()


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``leaves`` (RFC 6962 §2.1.1 PATH).

    Raises:
        ValueError: ``index`` is not a leaf of the tree.
    """
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf index {index} is outside a tree of {len(leaves)} leaves")
    hashes = [leaf_hash(leaf) for leaf in leaves]
    return _path(hashes, index, 0, len(hashes))


def _path(hashes: Sequence[bytes], m: int, lo: int, hi: int) -> list[bytes]:
    """PATH(m, D[lo:hi]), with ``m`` relative to ``lo``."""
    if hi - lo == 1:
        return []
    k = _split(hi - lo)
    if m < k:
        return _path(hashes, m, lo, lo + k) + [_subtree_root(hashes, lo + k, hi)]
    return _path(hashes, m - k, lo + k, hi) + [_subtree_root(hashes, lo, lo + k)]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes) -> bool:
    """Whether ``proof`` shows leaf data ``leaf`` at ``index`` in the tree of ``size`` with ``root_hash``.

    The algorithm of RFC 9162 §2.1.3.2. Malformed input (an index outside the
    tree, a proof of the wrong length or with elements that are not 32 bytes)
    is a failed verification, never an exception.
    """
    if not 0 <= index < size or not _well_formed(proof):
        return False
    fn, sn = index, size - 1
    r = leaf_hash(leaf)
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root_hash


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """The proof that the tree of ``leaves[:old_size]`` is a prefix of the tree of ``leaves``.

    RFC 6962 §2.1.2 PROOF(m, D[n]). Empty when ``old_size`` is 0 or ``len(leaves)``.

    Raises:
        ValueError: ``old_size`` is negative or larger than the tree.
    """
    n = len(leaves)
    if not 0 <= old_size <= n:
        raise ValueError(f"old size {old_size} is outside 0..{n}, the sizes a tree of {n} leaves has had")
    if old_size in (0, n):
        return []
    hashes = [leaf_hash(leaf) for leaf in leaves]
    return _subproof(hashes, old_size, 0, n, True)


def _subproof(hashes: Sequence[bytes], m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[lo:hi], b), with ``m`` relative to ``lo``."""
    if m == hi - lo:
        return [] if whole else [_subtree_root(hashes, lo, hi)]
    k = _split(hi - lo)
    if m <= k:
        return _subproof(hashes, m, lo, lo + k, whole) + [_subtree_root(hashes, lo + k, hi)]
    return _subproof(hashes, m - k, lo + k, hi, False) + [_subtree_root(hashes, lo, lo + k)]


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows the tree (``old_size``, ``old_root``) is a prefix of (``new_size``, ``new_root``).

    The algorithm of RFC 9162 §2.1.4.2, with its edge cases made explicit: equal
    sizes need an empty proof and equal roots; the empty tree is a prefix of
    every tree (empty proof); otherwise an empty proof fails. Malformed input is
    a failed verification, never an exception.
    """
    if not 0 <= old_size <= new_size or not _well_formed(proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


def _well_formed(proof: Sequence[bytes]) -> bool:
    return all(isinstance(p, bytes) and len(p) == HASH_BYTES for p in proof)


@dataclass(frozen=True)
class Frontier:
    """The roots of the perfect subtrees that make up a tree of ``size`` leaves.

    Also called a compact range: one root per set bit of ``size``, largest (leftmost)
    first. It is all that is needed to append more leaves and to compute the root
    at any later size, so a verifier can check records ``m+1..n`` against a signed
    head of size ``n`` holding only O(log m) hashes of the first ``m``.
    """

    size: int = 0
    peaks: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.peaks) != self.size.bit_count():
            raise ValueError(
                f"a frontier of {self.size} leaves has {max(self.size, 0).bit_count()} peaks, not {len(self.peaks)}"
            )
        if not _well_formed(self.peaks):
            raise ValueError(f"frontier peaks must be {HASH_BYTES}-byte hashes")

    def append(self, leaf: bytes) -> Frontier:
        """The frontier after appending leaf data ``leaf``."""
        peaks = list(self.peaks)
        h = leaf_hash(leaf)
        n = self.size
        while n & 1:
            h = node_hash(peaks.pop(), h)
            n >>= 1
        peaks.append(h)
        return Frontier(self.size + 1, tuple(peaks))

    def root(self) -> bytes:
        """The Merkle Tree Hash of the ``size`` leaves."""
        if not self.peaks:
            return EMPTY_ROOT
        h = self.peaks[-1]
        for peak in reversed(self.peaks[:-1]):
            h = node_hash(peak, h)
        return h


def frontier_of(leaves: Sequence[bytes]) -> Frontier:
    """The frontier of a tree of ``leaves``, in one pass."""
    peaks: list[bytes] = []
    for n, leaf in enumerate(leaves):
        h = leaf_hash(leaf)
        while n & 1:
            h = node_hash(peaks.pop(), h)
            n >>= 1
        peaks.append(h)
    return Frontier(len(leaves), tuple(peaks))
