"""An update of circleback's event carries the etag the cycle read (If-Match): a change the person makes in
Google between this cycle's read and its write is not overwritten; the next cycle reads it first."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from fake_google import FakeGoogle
from google_helpers import OWNER, Keeper, connector, occurrences

from connectors.base import Outcome
from connectors.google import event_id


def test_a_change_made_after_the_read_is_not_overwritten(fake_google: FakeGoogle) -> None:
    keeper = Keeper(connector(fake_google))
    desired = occurrences(2)
    keeper.read()
    keeper.apply(desired)
    keeper.read()
    target = desired[1]
    remote = event_id("default", target.key)
    # The person moves the event after this cycle read the calendar, before it writes.
    later = target.start + timedelta(hours=4)
    fake_google.person_moves(OWNER, remote, later, later + timedelta(minutes=30))
    retitled = dataclasses.replace(target, title="Nurture: grace, with the article")
    applied = keeper.apply([desired[0], retitled])
    result = next(r for r in applied.results if r.key == target.key)
    assert result.outcome is Outcome.FAILED and result.retryable
    assert "changed in Google" in result.reason
    theirs = fake_google.event(OWNER, remote)
    assert datetime.fromisoformat(theirs["start"]["dateTime"]) == later, "the person's move stands"
    assert theirs["summary"] == target.title
    # The next cycle reads their change first; its write then goes through.
    keeper.read()
    again = keeper.apply([desired[0], retitled])
    assert again.updated == (target.key,)
    assert fake_google.event(OWNER, remote)["summary"] == retitled.title
