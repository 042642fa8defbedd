"""RFC 6962 Merkle trees: reference vectors, and every proof of every small tree against a naive model."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.audit import merkle
from services.audit.merkle import Frontier

pytestmark = pytest.mark.unit

# The Certificate Transparency reference inputs (RFC 6962 test data).
CT_LEAVES = [
    bytes.fromhex(h)
    for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (0-based index, tree size, audit path)
CT_INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
# (old size, new size, proof)
CT_CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]

MAX_SIZE = 64


# A naive model, written from the RFC's definitions and sharing no code with the module.
def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return _sha(b"")
    if len(leaves) == 1:
        return _sha(b"\x00" + leaves[0])
    k = _k(len(leaves))
    return _sha(b"\x01" + naive_mth(leaves[:k]) + naive_mth(leaves[k:]))


def naive_path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _k(len(leaves))
    if m < k:
        return naive_path(m, leaves[:k]) + [naive_mth(leaves[k:])]
    return naive_path(m - k, leaves[k:]) + [naive_mth(leaves[:k])]


def naive_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [naive_mth(leaves)]
    k = _k(n)
    if m <= k:
        return naive_subproof(m, leaves[:k], whole) + [naive_mth(leaves[k:])]
    return naive_subproof(m - k, leaves[k:], False) + [naive_mth(leaves[:k])]


def naive_consistency(m: int, leaves: list[bytes]) -> list[bytes]:
    return [] if m in (0, len(leaves)) else naive_subproof(m, leaves, True)


LEAVES = [b"record-%d" % i for i in range(MAX_SIZE)]
ROOTS = [naive_mth(LEAVES[:n]) for n in range(MAX_SIZE + 1)]


def _flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


def test_the_empty_tree_hashes_to_sha256_of_nothing() -> None:
    assert merkle.root([]) == merkle.EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert Frontier().root() == merkle.EMPTY_ROOT


def test_leaf_and_node_hashes_carry_the_rfc_prefixes() -> None:
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert merkle.node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()


def test_roots_match_the_certificate_transparency_reference() -> None:
    for n, expected in enumerate(CT_ROOTS):
        assert merkle.root(CT_LEAVES[:n]).hex() == expected, f"size {n}"


@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
def test_inclusion_proofs_match_the_reference(index: int, size: int, path: list[str]) -> None:
    proof = merkle.inclusion_proof(CT_LEAVES[:size], index)
    assert [p.hex() for p in proof] == path
    assert merkle.verify_inclusion(CT_LEAVES[index], index, size, proof, bytes.fromhex(CT_ROOTS[size]))


@pytest.mark.parametrize(("old", "new", "path"), CT_CONSISTENCY)
def test_consistency_proofs_match_the_reference(old: int, new: int, path: list[str]) -> None:
    proof = merkle.consistency_proof(CT_LEAVES[:new], old)
    assert [p.hex() for p in proof] == path
    old_root, new_root = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
    assert merkle.verify_consistency(old, new, old_root, new_root, proof)


def test_root_and_frontier_match_the_naive_tree_for_every_size() -> None:
    frontier = Frontier()
    for n in range(1, MAX_SIZE + 1):
        frontier = frontier.append(LEAVES[n - 1])
        assert merkle.root(LEAVES[:n]) == ROOTS[n], f"size {n}"
        assert frontier.root() == ROOTS[n] and frontier == merkle.frontier_of(LEAVES[:n])
        assert len(frontier.peaks) == bin(n).count("1")


def test_every_inclusion_proof_of_every_size_matches_the_naive_path_and_verifies() -> None:
    for n in range(1, MAX_SIZE + 1):
        leaves = LEAVES[:n]
        for i in range(n):
            proof = merkle.inclusion_proof(leaves, i)
            assert proof == naive_path(i, leaves), (n, i)
            assert merkle.verify_inclusion(leaves[i], i, n, proof, ROOTS[n]), (n, i)


def test_every_inclusion_proof_fails_once_anything_is_changed() -> None:
    for n in range(1, MAX_SIZE + 1):
        leaves, root = LEAVES[:n], ROOTS[n]
        for i in range(n):
            proof = naive_path(i, leaves)
            assert not merkle.verify_inclusion(leaves[i] + b"!", i, n, proof, root)
            assert not merkle.verify_inclusion(leaves[i], i, n, proof, _flip(root))
            for j in range(n):
                if j != i:
                    assert not merkle.verify_inclusion(leaves[i], j, n, proof, root), (n, i, j)
            for e in range(len(proof)):
                bent = proof[:e] + [_flip(proof[e])] + proof[e + 1:]
                assert not merkle.verify_inclusion(leaves[i], i, n, bent, root), (n, i, e)
            assert not merkle.verify_inclusion(leaves[i], i, n, proof + [root], root)
            if proof:
                assert not merkle.verify_inclusion(leaves[i], i, n, proof[:-1], root)


def test_every_consistency_proof_of_every_pair_of_sizes_matches_the_naive_proof_and_verifies() -> None:
    for n in range(1, MAX_SIZE + 1):
        leaves = LEAVES[:n]
        for m in range(0, n + 1):
            proof = merkle.consistency_proof(leaves, m)
            assert proof == naive_consistency(m, leaves), (m, n)
            assert merkle.verify_consistency(m, n, ROOTS[m], ROOTS[n], proof), (m, n)


def test_every_consistency_proof_fails_once_anything_is_changed() -> None:
    for n in range(2, MAX_SIZE + 1):
        for m in range(1, n):
            proof = naive_consistency(m, LEAVES[:n])
            assert not merkle.verify_consistency(m, n, _flip(ROOTS[m]), ROOTS[n], proof), (m, n)
            assert not merkle.verify_consistency(m, n, ROOTS[m], _flip(ROOTS[n]), proof), (m, n)
            for e in range(len(proof)):
                bent = proof[:e] + [_flip(proof[e])] + proof[e + 1:]
                assert not merkle.verify_consistency(m, n, ROOTS[m], ROOTS[n], bent), (m, n, e)
            assert not merkle.verify_consistency(m, n, ROOTS[m], ROOTS[n], proof[:-1]), (m, n)
            assert not merkle.verify_consistency(m, n, ROOTS[m], ROOTS[n], proof + [ROOTS[n]]), (m, n)


def test_a_rewritten_prefix_is_not_consistent_with_the_old_root() -> None:
    rewritten = LEAVES[:40]
    rewritten[7] = b"rewritten"
    proof = merkle.consistency_proof(rewritten, 20)
    assert not merkle.verify_consistency(20, 40, ROOTS[20], merkle.root(rewritten), proof)


def test_consistency_edge_cases_follow_the_rfc() -> None:
    assert merkle.verify_consistency(5, 5, ROOTS[5], ROOTS[5], [])
    assert not merkle.verify_consistency(5, 5, ROOTS[5], ROOTS[4], [])
    assert not merkle.verify_consistency(5, 5, ROOTS[5], ROOTS[5], [ROOTS[5]])
    assert merkle.verify_consistency(0, 9, merkle.EMPTY_ROOT, ROOTS[9], [])
    assert not merkle.verify_consistency(0, 9, merkle.EMPTY_ROOT, ROOTS[9], [ROOTS[9]])
    assert not merkle.verify_consistency(3, 9, ROOTS[3], ROOTS[9], [])
    assert not merkle.verify_consistency(9, 3, ROOTS[9], ROOTS[3], [ROOTS[3]])
    assert not merkle.verify_consistency(-1, 3, ROOTS[0], ROOTS[3], [])


def test_malformed_input_is_a_failed_verification_not_an_exception() -> None:
    proof = merkle.inclusion_proof(LEAVES[:10], 3)
    assert not merkle.verify_inclusion(LEAVES[3], 3, 10, [proof[0][:31]] + proof[1:], ROOTS[10])
    assert not merkle.verify_inclusion(LEAVES[3], 10, 10, proof, ROOTS[10])
    assert not merkle.verify_inclusion(LEAVES[3], -1, 10, proof, ROOTS[10])
    assert not merkle.verify_inclusion(LEAVES[0], 0, 0, [], merkle.EMPTY_ROOT)
    cproof = merkle.consistency_proof(LEAVES[:10], 3)
    assert not merkle.verify_consistency(3, 10, ROOTS[3], ROOTS[10], ["x" * 32, *cproof[1:]])  # type: ignore[list-item]


def test_proof_generation_refuses_positions_outside_the_tree() -> None:
    with pytest.raises(ValueError, match="outside a tree of 4 leaves"):
        merkle.inclusion_proof(LEAVES[:4], 4)
    with pytest.raises(ValueError, match="outside a tree of 0 leaves"):
        merkle.inclusion_proof([], 0)
    with pytest.raises(ValueError, match="old size 5 is outside 0..4"):
        merkle.consistency_proof(LEAVES[:4], 5)


def test_a_frontier_checks_its_shape() -> None:
    with pytest.raises(ValueError, match="3 leaves has 2 peaks, not 1"):
        Frontier(3, (ROOTS[2],))
    with pytest.raises(ValueError, match="32-byte"):
        Frontier(1, (b"short",))
    with pytest.raises(ValueError, match="peaks"):
        Frontier(-1, ())


@settings(max_examples=60, deadline=None)
@given(leaves=st.lists(st.binary(max_size=40), min_size=1, max_size=200), data=st.data())
def test_random_trees_prove_random_leaves_and_prefixes(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    root = merkle.root(leaves)
    assert root == naive_mth(leaves)
    i = data.draw(st.integers(0, n - 1), label="index")
    assert merkle.verify_inclusion(leaves[i], i, n, merkle.inclusion_proof(leaves, i), root)
    m = data.draw(st.integers(0, n), label="old size")
    proof = merkle.consistency_proof(leaves, m)
    assert merkle.verify_consistency(m, n, merkle.root(leaves[:m]), root, proof)
