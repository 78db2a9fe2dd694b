"""Occurrence keys: one format, one parser, and the text of existing keys never changes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schedules.keys import NotAKey, OccurrenceKey, base_key
from schedules.occurrence import OccurrenceKind

PERIODS = st.one_of(
    st.builds(lambda y, w: f"{y}-W{w:02d}", st.integers(1970, 2200), st.integers(1, 53)),
    st.builds(lambda y, m: f"{y}-{m:02d}", st.integers(1970, 2200), st.integers(1, 12)),
)
NAMES = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != "")


@given(NAMES, PERIODS, st.integers(1, 50))
def test_a_touchpoint_key_round_trips_whatever_the_connection_is_called(
    name: str, period: str, n: int
) -> None:
    key = OccurrenceKey(OccurrenceKind.TOUCHPOINT, period, name, n)
    assert OccurrenceKey.parse(str(key)) == key


@given(PERIODS, st.integers(1, 50))
def test_a_review_key_round_trips(period: str, n: int) -> None:
    for key in (OccurrenceKey(OccurrenceKind.REVIEW, period, None, n), OccurrenceKey.kickoff()):
        assert OccurrenceKey.parse(str(key)) == key


def test_the_text_of_keys_written_by_earlier_releases_is_unchanged() -> None:
    for text in (
        "touchpoint:grace hopper:2026-W48",
        "touchpoint:women in tech london:2026-11#2",
        "review:2026-12",
        "review:kickoff",
        "review:kickoff#3",
    ):
        assert str(OccurrenceKey.parse(text)) == text


def test_a_hash_or_colon_in_a_connection_name_does_not_cut_the_key() -> None:
    # The old `key.split("#")` turned "c# meetup" into "touchpoint:c".
    assert base_key("touchpoint:c# meetup:2026-11#2") == "touchpoint:c# meetup:2026-11"
    key = OccurrenceKey.parse("touchpoint:smith: jane#1:2026-W03")
    assert key.connection == "smith: jane#1" and key.period == "2026-W03" and key.attempt == 1


@pytest.mark.parametrize(
    "text", ["", "touchpoint:x", "touchpoint::2026-11", "review:someday", "meeting:x:2026-11"]
)
def test_what_is_not_a_key_is_refused(text: str) -> None:
    with pytest.raises(NotAKey):
        OccurrenceKey.parse(text)
