"""Stable connection ids across renames: history follows the person, not the spelling of their name.

A connection's id is the plan's `id:`, else the case-folded name. When a plan renames a connection
without an `id:`, the rename is detected from what the store remembers (`Known`): a plan connection
whose id the store does not know, sharing an email address with a remembered connection the plan no longer
has, takes that connection's id. The log and the stored occurrences keep the old display name; `aliases`
maps each old (case-folded) name to the current one, so the core, which matches by name, sees one history.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from schedules.model import Plan


class Known(Protocol):
    """What the store remembers of a connection (daemon.store.KnownConnection fits)."""

    @property
    def conn_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def emails(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class Resolved:
    plan: Plan  # every connection with its id set
    aliases: Mapping[str, str]  # case-folded former name -> the current name


def resolve(plan: Plan, known: Sequence[Known]) -> Resolved:
    by_id = {k.conn_id: k for k in known}
    claimed = {c.ident for c in plan.connections}
    orphans = [k for k in known if k.conn_id not in claimed]
    connections = []
    aliases: dict[str, str] = {}
    for connection in plan.connections:
        ident = connection.ident
        if connection.id is None and ident not in by_id:
            mine = set(connection.all_emails)
            match = next((k for k in orphans if mine & {e.casefold() for e in k.emails}), None)
            if match is not None:
                orphans.remove(match)
                ident = match.conn_id
        former = by_id.get(ident)
        if former is not None and former.name.casefold() != connection.name.casefold():
            aliases[former.name.casefold()] = connection.name
        if ident != connection.name.casefold() and ident not in aliases:
            aliases.setdefault(ident, connection.name)  # an id that was once a (case-folded) name
        connections.append(dataclasses.replace(connection, id=ident))
    return Resolved(dataclasses.replace(plan, connections=tuple(connections)), aliases)


def renamed(name: str, aliases: Mapping[str, str]) -> str:
    """The current name for a name found in the log or the store."""
    return aliases.get(name.casefold(), name)
