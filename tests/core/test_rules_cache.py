"""The cached address verdicts of the content rules (``rules._address_problem``, issue 16
item 4) against the uncached check, and the bound that keeps hostile strings out of the cache."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gitmail.core import rules
from gitmail.core.address import check_address
from gitmail.errors import GitmailError

_names = st.text(min_size=0, max_size=140) | st.sampled_from(
    ["max", "*", "team:ops", "team:", "Mac CLI 小克", " max", "ma\u0301x", "m\u00e1x", "a" * 100, "a" * 101,
     "é" * 50, "é" * 51, "team:" + "a" * 100, "-x", "a,b", "\u202e"])


@settings(max_examples=400, deadline=None)
@given(_names)
def test_cached_verdict_is_the_check(a: str) -> None:
    try:
        check_address(a)
        want = None
    except GitmailError as e:
        want = str(e)
    assert rules._address_problem(a) == want
    assert rules._address_problem(a) == want  # the second call answers from the cache


def test_no_address_is_longer_than_the_cache_bound_and_long_strings_stay_out() -> None:
    longest = ["a" * 100, "team:" + "a" * 100]
    assert all(rules._address_problem(a) is None for a in longest)
    assert max(len(a) for a in longest) == rules.CACHED_ADDRESS
    rules._cached_address_problem.cache_clear()
    hostile = "x" * (1 << 20)
    assert rules._address_problem(hostile) is not None
    assert rules._cached_address_problem.cache_info().currsize == 0
