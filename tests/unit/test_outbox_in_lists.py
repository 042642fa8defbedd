"""The relay deletes a published batch with IN lists padded to a power of two: exactly the batch's rows."""

from __future__ import annotations

import random

import pytest

from services.common.chunk_sizes import in_lists


@pytest.mark.parametrize("count", [1, 2, 3, 5, 64, 65, 500, 512, 513, 1024, 1500])
def test_each_value_in_exactly_one_list_and_no_other_value(count: int) -> None:
    values = random.Random(count).sample(range(10**9), count)
    lists = in_lists(values)
    covered: list[int] = []
    for params in lists:
        size = len(params)
        assert size & (size - 1) == 0 and size <= 512  # a power of two, within the longest list
        assert list(params) == [f"s{i}" for i in range(size)]
        distinct = list(dict.fromkeys(params.values()))
        assert set(params.values()) == set(distinct)
        covered += distinct
    assert covered == values  # in order, each once, nothing added


def test_a_short_list_is_padded_with_its_own_last_value() -> None:
    assert in_lists([7, 8, 9]) == [{"s0": 7, "s1": 8, "s2": 9, "s3": 9}]
    assert in_lists([4]) == [{"s0": 4}]
    assert in_lists([]) == []
