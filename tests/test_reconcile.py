"""Reconciliation rules, each with the cases that should and should not count."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from builders import connection, london_plan

from schedules.events import Attendee, Interaction, InteractionKind, Observation, PartStat
from schedules.occurrence import Occurrence, OccurrenceKind, OccurrenceStatus, occurrence_uid
from schedules.reconcile import (
    NewEntry,
    Outcomes,
    StatusChange,
    TrackedOccurrence,
    reconcile,
    touchpoint_connection,
)

NOTE = "Her husband is unwell; do not mention the merger"
DESCRIPTION_SECRET = "Context: she asked about the compiler article"

GRACE = connection(
    "Grace Hopper",
    next_action="Send her the compiler article",
    email="grace@example.com",
    emails=("g.hopper@navy.example",),
    notes=NOTE,
)
ALAN = connection(
    "Alan Turing",
    stage="elevate",
    every="month",
    duration="1h",
    next_action="Ask about the Manchester job",
    email="alan@example.com",
)
WITL = connection(
    "Women in Tech London",
    group=True,
    stage="find",
    every="month",
    duration="1h",
    next_action="Attend the next meetup",
    target=True,
    keywords=("witl", "c++"),
)
PLAN = london_plan(GRACE, ALAN, WITL, mindset="Relationships are the currency of leadership.")

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TUE_10 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # London is on UTC in November
GRACE_KEY = "touchpoint:grace hopper:2026-W48"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def touchpoint(
    name: str = "Grace Hopper", start: datetime = TUE_10, minutes: int = 30, key: str | None = None
) -> Occurrence:
    return Occurrence(
        key=key or f"touchpoint:{name.casefold()}:2026-W48",
        kind=OccurrenceKind.TOUCHPOINT,
        connection=name,
        due=date(2026, 11, 23),
        start=start,
        end=start + timedelta(minutes=minutes),
        title=f"Nurture: {name}",
        description=DESCRIPTION_SECRET,
    )


def review(start: datetime = TUE_10) -> Occurrence:
    return Occurrence(
        key="review:2026-11",
        kind=OccurrenceKind.REVIEW,
        connection=None,
        due=date(2026, 11, 1),
        start=start,
        end=start + timedelta(minutes=30),
        title="Review: relationship plan",
        description=DESCRIPTION_SECRET,
    )


def placed(*occurrences: Occurrence) -> list[TrackedOccurrence]:
    return [TrackedOccurrence(o, OccurrenceStatus.PLACED) for o in occurrences]


def seen(
    start: datetime,
    minutes: int = 30,
    *,
    uid: str = "evt-1@example.com",
    source: str = "work",
    summary: str = "Meeting",
    attendees: tuple[Attendee, ...] = (),
    organizer: str | None = None,
    cancelled: bool = False,
    all_day: bool = False,
    key: str | None = None,
    recurrence_id: datetime | None = None,
) -> Observation:
    return Observation(
        source=source,
        uid=uid,
        start=start,
        end=start + timedelta(minutes=minutes),
        summary=summary,
        attendees=attendees,
        organizer=organizer,
        cancelled=cancelled,
        all_day=all_day,
        recurrence_id=recurrence_id,
        circleback_key=key,
    )


def copy_of(occ: Occurrence, start: datetime | None = None, **kwargs: object) -> Observation:
    """The touchpoint as a subscriber's calendar shows it, optionally moved."""
    begin = start or occ.start
    minutes = int((occ.end - occ.start).total_seconds() // 60)
    options: dict[str, object] = {"uid": occ.uid, "summary": occ.title, "key": occ.key}
    options.update(kwargs)
    return seen(begin, minutes, **options)  # type: ignore[arg-type]


def run(
    occurrences: list[Occurrence] | None = None,
    observations: list[Observation] | None = None,
    interactions: list[Interaction] | None = None,
    now: datetime = NOW,
    grace: timedelta = timedelta(hours=24),
) -> Outcomes:
    return reconcile(PLAN, placed(*(occurrences or [])), observations or [], interactions or [], now, grace)


def who(outcomes: Outcomes) -> list[tuple[str, datetime, str, str | None]]:
    return [
        (e.interaction.connection, e.interaction.at, e.interaction.source, e.interaction.event_uid)
        for e in outcomes.entries
    ]


def attendee(email: str, partstat: PartStat = PartStat.ACCEPTED) -> Attendee:
    return Attendee(email, partstat)


# Rule 1: our own touchpoints seen in a source calendar


def test_touchpoint_matched_by_key_completes_and_logs_a_give() -> None:
    occ = touchpoint()
    obs = copy_of(occ, uid="moved-copy@example.com")
    out = run([occ], [obs])
    assert out.statuses == {GRACE_KEY: StatusChange(OccurrenceStatus.COMPLETED, TUE_10, obs.instance_id)}
    assert out.entries == (
        NewEntry(
            Interaction(
                "Grace Hopper", TUE_10, InteractionKind.GIVE, "", "touchpoint", "moved-copy@example.com"
            ),
            GRACE_KEY,
        ),
    )
    assert out.reviews_done == ()


def test_a_uid_alone_never_completes_a_touchpoint() -> None:
    # Our UIDs are derived from guessable keys: only the (signed) key a copy carries proves it is ours.
    occ = touchpoint()
    out = run([occ], [copy_of(occ, key=None)])
    assert out.statuses[GRACE_KEY].status == OccurrenceStatus.MISSED
    assert out.entries == ()


def test_the_key_a_copy_carries_decides_not_its_uid() -> None:
    occ = touchpoint()
    out = run([occ], [copy_of(occ, key="touchpoint:grace hopper:2026-W40")])
    assert [e.occurrence_key for e in out.entries] == ["touchpoint:grace hopper:2026-W40"]


def test_unrelated_key_and_uid_do_not_match() -> None:
    occ = touchpoint()
    out = run(
        [occ], [seen(TUE_10, uid="other@example.com", key="touchpoint:alan turing:2026-W40")], now=at(24, 11)
    )
    assert out.statuses == {}


def test_moved_touchpoint_counts_at_the_moved_time() -> None:
    occ = touchpoint()
    moved = copy_of(occ, start=at(23, 15), uid="mine@example.com")
    out = run([occ], [moved])
    assert out.statuses[GRACE_KEY] == StatusChange(OccurrenceStatus.COMPLETED, at(23, 15), "mine@example.com")
    assert who(out) == [("Grace Hopper", at(23, 15), "touchpoint", "mine@example.com")]
    assert any("moved from 2026-11-24 10:00" in line for line in out.explain)


def test_moved_copy_wins_over_an_unmoved_subscriber_copy() -> None:
    occ = touchpoint()
    feed_copy = copy_of(occ, source="subscribed")
    moved_later = copy_of(occ, start=at(26, 14), uid="mine@example.com")  # after NOW: still to come
    out = run([occ], [feed_copy, moved_later])
    assert out.statuses == {}
    assert out.entries == ()


def test_touchpoint_seen_but_not_over_yet_changes_nothing() -> None:
    occ = touchpoint(start=at(26, 11, 45))  # ends 12:15, NOW is 12:00
    out = run([occ], [copy_of(occ)])
    assert out == Outcomes()


def test_touchpoint_moved_past_its_grace_is_not_missed() -> None:
    occ = touchpoint(start=at(20, 10))  # planned end + grace long gone
    out = run([occ], [copy_of(occ, start=at(27, 10))])
    assert out.statuses == {}


def test_a_copy_the_person_cancelled_is_their_skip() -> None:
    # Issue 11: deleting (cancelling) circleback's event in one's own calendar is a decision, like
    # `circleback skip`: the touchpoint is skipped, never completed, and its period is not planned again.
    occ = touchpoint()
    out = run([occ], [copy_of(occ, cancelled=True)])
    assert out.statuses[GRACE_KEY].status == OccurrenceStatus.SKIPPED
    assert out.entries == ()
    assert any("deleted or declined in work calendar" in line for line in out.explain)


def test_contact_declining_the_touchpoint_means_it_did_not_happen() -> None:
    occ = touchpoint()
    obs = copy_of(occ, attendees=(attendee("grace@example.com", PartStat.DECLINED),))
    out = run([occ], [obs])
    assert out.statuses[GRACE_KEY].status == OccurrenceStatus.MISSED
    assert out.entries == ()


def test_owner_declining_the_touchpoint_skips_it() -> None:
    occ = touchpoint()
    obs = copy_of(occ, attendees=(attendee("ADA@example.com", PartStat.DECLINED),))
    out = run([occ], [obs])
    assert out.statuses[GRACE_KEY].status == OccurrenceStatus.SKIPPED
    assert out.entries == ()


def test_review_seen_goes_to_reviews_done_without_an_entry() -> None:
    occ = review()
    out = run([occ], [copy_of(occ)])
    assert out.reviews_done == (TUE_10,)
    assert out.statuses == {"review:2026-11": StatusChange(OccurrenceStatus.COMPLETED, TUE_10, occ.uid)}
    assert out.entries == ()


def test_touchpoint_of_a_connection_removed_from_the_plan_completes_without_an_entry() -> None:
    occ = touchpoint("Charles Babbage")
    out = run([occ], [copy_of(occ)])
    assert out.statuses[occ.key].status == OccurrenceStatus.COMPLETED
    assert out.entries == ()


def test_invited_contact_on_own_touchpoint_is_not_counted_twice() -> None:
    occ = touchpoint()
    obs = copy_of(occ, attendees=(attendee("grace@example.com"), attendee("alan@example.com")))
    out = run([occ], [obs])
    assert who(out) == [
        ("Alan Turing", TUE_10, "calendar", occ.uid),
        ("Grace Hopper", TUE_10, "touchpoint", occ.uid),
    ]


def test_two_copies_of_one_touchpoint_log_its_contact_once() -> None:
    occ = touchpoint()
    invited_copy = copy_of(occ, source="subscribed", attendees=(attendee("grace@example.com"),))
    moved = copy_of(occ, start=at(25, 9), uid="mine@example.com")
    out = run([occ], [invited_copy, moved])
    assert who(out) == [("Grace Hopper", at(25, 9), "touchpoint", "mine@example.com")]


# Rule 2: other past meetings with focus contacts


def test_attendee_email_matches_case_insensitively() -> None:
    obs = seen(at(25, 14), summary="Coffee", attendees=(attendee("Grace@Example.COM"),))
    out = run(observations=[obs])
    assert who(out) == [("Grace Hopper", at(25, 14), "calendar", "evt-1@example.com")]
    assert out.entries[0].occurrence_key is None
    assert out.entries[0].interaction.kind == InteractionKind.GIVE
    assert out.entries[0].interaction.note == ""


def test_second_address_of_a_contact_matches() -> None:
    out = run(observations=[seen(at(25, 14), attendees=(attendee("g.hopper@navy.example"),))])
    assert [e.interaction.connection for e in out.entries] == ["Grace Hopper"]


def test_organizer_matches_even_with_a_mailto_prefix() -> None:
    out = run(observations=[seen(at(25, 14), organizer="MAILTO:alan@example.com")])
    assert [e.interaction.connection for e in out.entries] == ["Alan Turing"]


@pytest.mark.parametrize(
    ("partstat", "counts"),
    [
        (PartStat.ACCEPTED, True),
        (PartStat.TENTATIVE, True),
        (PartStat.NEEDS_ACTION, True),
        (PartStat.DECLINED, False),
    ],
)
def test_declined_contact_did_not_meet(partstat: PartStat, counts: bool) -> None:
    out = run(observations=[seen(at(25, 14), attendees=(attendee("grace@example.com", partstat),))])
    assert bool(out.entries) is counts


def test_declined_organizer_does_not_count() -> None:
    obs = seen(
        at(25, 14),
        organizer="grace@example.com",
        attendees=(attendee("grace@example.com", PartStat.DECLINED),),
    )
    assert run(observations=[obs]).entries == ()


def test_owner_declined_meeting_does_not_count() -> None:
    obs = seen(
        at(25, 14),
        attendees=(attendee("grace@example.com"), attendee("ada@example.com", PartStat.DECLINED)),
    )
    assert run(observations=[obs]).entries == ()


def test_cancelled_meeting_did_not_happen() -> None:
    obs = seen(at(25, 14), attendees=(attendee("grace@example.com"),), cancelled=True)
    assert run(observations=[obs]).entries == ()


def test_future_and_ongoing_meetings_do_not_count_yet() -> None:
    future = seen(at(27, 9), attendees=(attendee("grace@example.com"),), uid="f@x")
    ongoing = seen(at(26, 11, 30), 60, attendees=(attendee("grace@example.com"),), uid="o@x")
    ends_now = seen(at(26, 11, 30), 30, attendees=(attendee("grace@example.com"),), uid="n@x")
    out = run(observations=[future, ongoing, ends_now])
    assert [e.interaction.event_uid for e in out.entries] == ["n@x"]


def test_group_matches_by_keyword_on_word_boundaries() -> None:
    hits = [
        seen(at(25, 18), summary="WITL drinks", uid="a@x"),
        seen(at(25, 19), summary="Talk: modern C++ in practice", uid="b@x"),
        seen(at(25, 20), summary="Women  in TECH london: meetup", uid="c@x"),
    ]
    misses = [
        seen(at(25, 9), summary="Switlana's birthday", uid="d@x"),
        seen(at(25, 10), summary="C++17 migration", uid="e@x"),
        seen(at(25, 11), summary="Women in Tech Londoners", uid="f@x"),
    ]
    out = run(observations=hits + misses)
    assert [(e.interaction.connection, e.interaction.event_uid) for e in out.entries] == [
        ("Women in Tech London", "a@x"),
        ("Women in Tech London", "b@x"),
        ("Women in Tech London", "c@x"),
    ]
    assert any("title matches 'witl'" in line for line in out.explain)


def test_person_is_never_matched_by_title() -> None:
    assert run(observations=[seen(at(25, 14), summary="Lunch with Grace Hopper")]).entries == ()


def test_all_day_events_count_only_through_attendees() -> None:
    banner = seen(at(25, 0), 24 * 60, summary="WITL conference week", all_day=True, uid="banner@x")
    offsite = seen(
        at(25, 0),
        24 * 60,
        summary="Offsite",
        all_day=True,
        uid="offsite@x",
        attendees=(attendee("alan@example.com"),),
    )
    out = run(observations=[banner, offsite])
    assert [(e.interaction.connection, e.interaction.event_uid) for e in out.entries] == [
        ("Alan Turing", "offsite@x")
    ]


def test_one_event_counts_for_several_connections() -> None:
    obs = seen(
        at(25, 18),
        summary="WITL panel",
        organizer="grace@example.com",
        attendees=(attendee("alan@example.com"),),
    )
    out = run(observations=[obs])
    assert sorted(e.interaction.connection for e in out.entries) == [
        "Alan Turing",
        "Grace Hopper",
        "Women in Tech London",
    ]


def test_each_instance_of_a_recurring_series_is_its_own_entry() -> None:
    series = [
        seen(at(day, 9), uid="weekly@x", recurrence_id=at(day, 9), attendees=(attendee("alan@example.com"),))
        for day in (12, 19)
    ]
    out = run(observations=series)
    assert [e.interaction.event_uid for e in out.entries] == [
        "weekly@x/20261112T090000Z",
        "weekly@x/20261119T090000Z",
    ]


def test_old_touchpoint_still_counts_for_its_connection() -> None:
    old_key = "touchpoint:grace hopper:2026-W46"
    obs = seen(at(10, 10), uid=occurrence_uid(old_key), key=old_key, summary="Nurture: Grace Hopper")
    out = run(observations=[obs])
    assert [(e.interaction.connection, e.interaction.source, e.occurrence_key) for e in out.entries] == [
        ("Grace Hopper", "touchpoint", old_key)
    ]
    assert out.statuses == {}


def test_old_touchpoint_of_a_removed_connection_is_ignored() -> None:
    old_key = "touchpoint:charles babbage:2026-W46"
    obs = seen(at(10, 10), uid=occurrence_uid(old_key), key=old_key, summary="Nurture: Charles Babbage")
    assert run(observations=[obs]) == Outcomes()


def test_own_events_never_match_a_group_by_title() -> None:
    old_key = "touchpoint:alan turing:2026-W46"
    obs = seen(at(10, 10), uid=occurrence_uid(old_key), key=old_key, summary="Elevate: Alan Turing at WITL")
    unknown_own = seen(at(11, 10), uid=occurrence_uid("review:2026-10"), summary="WITL review")
    out = run(observations=[obs, unknown_own])
    assert [e.interaction.connection for e in out.entries] == ["Alan Turing"]


def test_settled_occurrences_are_treated_as_untracked() -> None:
    occ = touchpoint()
    done = [TrackedOccurrence(occ, OccurrenceStatus.COMPLETED)]
    out = reconcile(PLAN, done, [copy_of(occ)], [], NOW)
    assert out.statuses == {}
    assert who(out) == [("Grace Hopper", TUE_10, "touchpoint", occ.uid)]


# Rule 3: missed after grace, unless an interaction was logged


def test_touchpoint_missed_once_grace_has_passed() -> None:
    occ = touchpoint()  # ends 10:30 on the 24th
    assert run([occ], now=at(25, 10, 29)).statuses == {}
    assert run([occ], now=at(25, 10, 30)).statuses == {
        GRACE_KEY: StatusChange(OccurrenceStatus.MISSED, None, None)
    }
    assert (
        run([occ], now=at(24, 12), grace=timedelta(hours=1)).statuses[GRACE_KEY].status
        == OccurrenceStatus.MISSED
    )


def test_review_missed_after_grace_and_not_before() -> None:
    occ = review()
    assert run([occ], now=at(25, 9)).statuses == {}
    out = run([occ])
    assert out.statuses == {"review:2026-11": StatusChange(OccurrenceStatus.MISSED, None, None)}
    assert out.reviews_done == ()


def test_manual_log_turns_a_placed_touchpoint_completed() -> None:
    coffee = Interaction("grace hopper", at(20, 8), note=NOTE)  # within a week (half the cadence) before
    out = run([touchpoint()], interactions=[coffee])
    assert out.statuses == {GRACE_KEY: StatusChange(OccurrenceStatus.COMPLETED, at(20, 8), None)}
    assert out.entries == ()
    assert all(NOTE not in line for line in out.explain)


def test_manual_log_outside_the_window_does_not_save_it() -> None:
    too_early = Interaction("Grace Hopper", at(17, 9))  # more than a week before the touchpoint
    too_late = Interaction("Grace Hopper", at(27, 9))  # after now
    someone_else = Interaction("Alan Turing", at(24, 9))
    out = run([touchpoint()], interactions=[too_early, too_late, someone_else])
    assert out.statuses[GRACE_KEY].status == OccurrenceStatus.MISSED


def test_meeting_found_in_the_same_run_completes_the_touchpoint() -> None:
    lunch = seen(at(23, 12), uid="lunch@x", attendees=(attendee("grace@example.com"),))
    out = run([touchpoint()], [lunch])
    assert out.statuses[GRACE_KEY] == StatusChange(OccurrenceStatus.COMPLETED, at(23, 12), "lunch@x")
    assert who(out) == [("Grace Hopper", at(23, 12), "calendar", "lunch@x")]


# Rule 4: deduplication and idempotence


def test_same_event_in_two_calendars_gives_one_entry() -> None:
    a = seen(at(25, 14), source="work", attendees=(attendee("grace@example.com"),))
    b = seen(at(25, 14), source="home", attendees=(attendee("grace@example.com"),))
    assert len(run(observations=[a, b]).entries) == 1


def test_feeding_entries_back_adds_nothing() -> None:
    occ = touchpoint()
    observations = [
        copy_of(occ),
        seen(at(25, 18), summary="WITL social", attendees=(attendee("alan@example.com"),)),
    ]
    first = run([occ], observations)
    assert len(first.entries) == 3
    second = run([occ], observations, [e.interaction for e in first.entries])
    assert second.entries == ()
    assert second.statuses == first.statuses


def test_after_completion_the_untracked_touchpoint_adds_nothing() -> None:
    occ = touchpoint()
    observations = [copy_of(occ, source="subscribed"), copy_of(occ, start=at(23, 15), uid="mine@x")]
    first = run([occ], observations)
    assert who(first) == [("Grace Hopper", at(23, 15), "touchpoint", "mine@x")]
    second = run([], observations, [e.interaction for e in first.entries])
    assert second.entries == ()


def test_an_existing_entry_with_another_source_blocks_a_duplicate() -> None:
    existing = Interaction("GRACE HOPPER", at(25, 14), source="calendar", event_uid="evt-1@example.com")
    out = run(
        observations=[seen(at(25, 14), attendees=(attendee("grace@example.com"),))], interactions=[existing]
    )
    assert out.entries == ()


def test_manual_entries_never_block_calendar_ones() -> None:
    manual = Interaction("Grace Hopper", at(25, 14))
    out = run(
        observations=[seen(at(25, 14), attendees=(attendee("grace@example.com"),))], interactions=[manual]
    )
    assert len(out.entries) == 1


# Explanations


def test_explain_lines_name_title_time_and_calendar() -> None:
    occ = touchpoint()
    out = run([occ, review(at(24, 15))], [copy_of(occ)])
    assert "completed  Nurture: Grace Hopper  2026-11-24 10:00 (seen in work calendar)" in out.explain
    assert any(
        line.startswith("missed     Review: relationship plan  2026-11-24 15:00") for line in out.explain
    )
    assert any(line.startswith("logged     Grace Hopper  2026-11-24 10:00") for line in out.explain)


def test_explain_shows_local_time_in_summer() -> None:
    occ = touchpoint(start=datetime(2026, 7, 7, 9, 0, tzinfo=UTC))
    out = run([occ], [copy_of(occ)])
    assert "completed  Nurture: Grace Hopper  2026-07-07 10:00 (seen in work calendar)" in out.explain


def test_explain_never_carries_contact_notes_or_descriptions() -> None:
    occ = touchpoint()
    observations = [
        copy_of(occ),
        seen(at(25, 14), uid="x@x", attendees=(attendee("alan@example.com"),)),
        seen(at(25, 18), uid="y@x", summary="WITL social"),
    ]
    out = run([occ, review()], observations, [Interaction("Alan Turing", at(20, 9), note=NOTE)])
    assert len(out.explain) >= 4
    for line in out.explain:
        assert NOTE not in line and DESCRIPTION_SECRET not in line
        assert "@" not in line  # no addresses either


# Inputs and helpers


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        reconcile(PLAN, [], [], [], datetime(2026, 11, 26, 12))


def test_negative_grace_is_rejected() -> None:
    with pytest.raises(ValueError, match="grace must not be negative"):
        reconcile(PLAN, [], [], [], NOW, timedelta(hours=-1))


def test_conflicting_occurrences_with_one_key_are_rejected() -> None:
    with pytest.raises(ValueError, match="tracked twice"):
        reconcile(PLAN, placed(touchpoint(), touchpoint(start=at(25, 10))), [], [], NOW)


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("touchpoint:grace hopper:2026-W48", "grace hopper"),
        ("touchpoint:odd:name:2026-11", "odd:name"),
        ("review:2026-11", None),
        ("touchpoint::2026-11", None),
        ("touchpoint:grace hopper", None),
    ],
)
def test_touchpoint_connection_parses_keys(key: str, name: str | None) -> None:
    assert touchpoint_connection(key) == name


def test_a_withdrawn_entry_is_never_logged_again_and_proves_nothing() -> None:
    lunch = seen(at(23, 12), uid="lunch@x", attendees=(attendee("grace@example.com"),))
    taken_back = Interaction("Grace Hopper", at(23, 12), source="calendar", event_uid="lunch@x")
    out = reconcile(PLAN, placed(touchpoint()), [lunch], [], NOW, withdrawn=[taken_back])
    assert out.entries == ()
    # Without the undone entry as evidence, and the meeting itself withdrawn, the touchpoint was missed.
    assert out.statuses[GRACE_KEY].status == OccurrenceStatus.MISSED


def test_a_review_logged_by_hand_completes_the_review_block() -> None:
    done = Interaction("@review", at(24, 16), source="manual")
    out = run([review()], interactions=[done])
    assert out.statuses == {"review:2026-11": StatusChange(OccurrenceStatus.COMPLETED, at(24, 16), None)}
    assert out.entries == ()
