"""The symmetric-delete index for misspelt names (kgx.linking.fuzzy)."""

from __future__ import annotations

import sqlite3

import pytest

pytest.importorskip("rapidfuzz")

from kgx.linking import fuzzy  # noqa: E402

KEYS = ["abraham lincoln", "abraham lincoln (film)", "lincoln, nebraska", "mary todd lincoln",
        "abram", "ayn rand", "aberdeen", "zürich", "東京"]


@pytest.fixture
def db() -> sqlite3.Connection:
    con = sqlite3.connect(":memory:")
    assert fuzzy.build(con, KEYS) == len(KEYS)
    return con


@pytest.mark.parametrize("query, expected", [
    ("abraham lincon", "abraham lincoln"),     # deletion after the prefix
    ("abrahm lincoln", "abraham lincoln"),     # deletion inside the prefix
    ("abarham lincoln", "abraham lincoln"),    # transposition (two edits)
    ("ayn randd", "ayn rand"),
    ("zurich", "zürich"),
    ("東亰", "東京"),
])
def test_misspelt_names_find_their_key(db, query: str, expected: str) -> None:
    found = fuzzy.search(db, query)
    assert found and found[0][0] == expected, found


def test_nearest_first_and_bounded_distance(db) -> None:
    found = fuzzy.search(db, "abraham lincoln", k=5)
    assert found[0] == ("abraham lincoln", 0)
    assert all(d <= 2 for _, d in found)
    assert fuzzy.search(db, "completely different") == []


def test_a_lookup_reads_a_bounded_number_of_variants() -> None:
    # Deletions of the prefix only: bounded whatever the key's length.
    n = fuzzy.PREFIX
    assert len(fuzzy.deletions("abcdefghijklmnopqrstuvwxyz" * 20, depth=2)) <= \
        1 + n + n * (n - 1) // 2
    assert fuzzy.deletions("abc") == {"abc", "bc", "ac", "ab"}
    assert fuzzy.deletions("abc", depth=2) == {"abc", "bc", "ac", "ab", "a", "b", "c"}


def test_no_index_is_an_operational_error() -> None:
    with pytest.raises(sqlite3.OperationalError):
        fuzzy.search(sqlite3.connect(":memory:"), "abc")
