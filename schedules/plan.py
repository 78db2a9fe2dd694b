"""Reading and validating the focus plan (plan.yaml), with a file, line, column and field for every problem.

The YAML is *composed* into ruamel's node graph rather than loaded into Python objects:
- nothing is ever built from a tag, so the parse is safe by construction;
- every key, value and list item keeps its own line and column, even inside flow mappings;
- duplicate keys are found while walking, so they join the other problems instead of aborting the parse;
- a scalar keeps the text the person wrote, so an unquoted `17:30` is a time even in a `%YAML 1.1`
  document (where it resolves to the base-60 integer 1050).
The document is read as YAML 1.2 (`yes` is text there), but an unquoted yes/no/on/off where text is
expected is still an error, because YAML 1.1 readers (and people) take it for a boolean.

Choices made here, beyond the method's rules:
- `review.every` is `month` or `quarter` (`1 month` and `3 months` are the same cadences and accepted);
  any other cadence is an error, because the method revisits the plan monthly or quarterly.
- `review.duration` and a connection's `duration` default to 30 minutes; `kind` defaults to person,
  `target` to false, `review.kickoff` to true. Every other field of `owner`, `working_hours`, `review`
  and a connection (`name`, `stage`, `every`, `next_action`) is required, as are all top-level keys.
- An optional key given with no value (`email:`) is the same as leaving it out.
- Email addresses are lower-cased; one address may identify only one connection and never the owner
  (the owner attends every meeting, so it would match them all).
- Names, keywords and working days compare case-insensitively; stage and kind accept any case.
- `placement` is optional, and so is each of its keys: `prefer` defaults to 10:00-12:00 and 14:00-16:30,
  `buffer` to 15m (`0m` for none, 2h at most), `max_per_day` to 1, and `holidays` to the country of the
  time zone (tzdata's zone.tab) when the holidays package knows it (`none` or `false` for none). Every
  preferred window, the plan's or a connection's, must lie inside working hours.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import warnings
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import time, timedelta
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo, available_timezones

import holidays
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from schedules.cadence import Cadence, CadenceError, parse_cadence, parse_duration
from schedules.model import (
    MAX_CONNECTIONS,
    WEEKDAYS,
    Connection,
    ConnectionKind,
    Owner,
    Placement,
    Plan,
    Review,
    Role,
    Stage,
    Window,
    WorkingHours,
)

DEFAULT_DURATION = timedelta(minutes=30)
REVIEW_CADENCES = (Cadence(1, "month"), Cadence(3, "month"))

REQUIRED_TOP_KEYS = ("owner", "timezone", "mindset", "working_hours", "review", "connections")
TOP_KEYS = (*REQUIRED_TOP_KEYS, "placement")
PLACEMENT_KEYS = ("prefer", "buffer", "max_per_day", "holidays")
MAX_BUFFER = timedelta(hours=2)
MAX_PER_DAY_LIMIT = 24
OWNER_KEYS = ("name", "email")
HOURS_KEYS = ("days", "start", "end")
REVIEW_KEYS = ("every", "duration", "kickoff")
CONNECTION_KEYS = (
    "name",
    "kind",
    "email",
    "emails",
    "keywords",
    "target",
    "stage",
    "every",
    "duration",
    "next_action",
    "notes",
    "prefer",
    "role",
    "id",
)

# Words people reach for instead of our key names; difflib alone cannot see that 'cadence' means 'every'.
_SYNONYMS = {
    "cadence": "every",
    "frequency": "every",
    "interval": "every",
    "period": "every",
    "repeat": "every",
    "rhythm": "every",
    "action": "next_action",
    "next": "next_action",
    "next_step": "next_action",
    "wise_action": "next_action",
    "type": "kind",
    "phase": "stage",
    "step": "stage",
    "tz": "timezone",
    "time_zone": "timezone",
    "zone": "timezone",
    "length": "duration",
    "minutes": "duration",
    "hours": "working_hours",
    "workhours": "working_hours",
    "work_hours": "working_hours",
    "note": "notes",
    "context": "notes",
    "mail": "email",
    "e_mail": "email",
    "addresses": "emails",
    "other_emails": "emails",
    "keyword": "keywords",
    "tags": "keywords",
    "is_target": "target",
    "new": "target",
    "people": "connections",
    "contacts": "connections",
    "focus": "connections",
    "reviews": "review",
    "me": "owner",
    "user": "owner",
    "first": "start",
    "from": "start",
    "until": "end",
    "to": "end",
    "weekdays": "days",
}

_TAG = "tag:yaml.org,2002:"
_STR, _BOOL, _INT, _FLOAT, _NULL = (_TAG + t for t in ("str", "bool", "int", "float", "null"))
_TIMESTAMP, _MERGE = _TAG + "timestamp", _TAG + "merge"
_MAX_NESTING = 200
_YAML11_BOOLEANS = frozenset({"yes", "no", "on", "off"})

_CLOCK_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")
_WINDOW_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_ZEROES = frozenset({"0", "0m", "0h"})
_EMAIL_RE = re.compile(r'^[^@\s<>(),;:"]+@[^@\s<>(),;:".]+(?:\.[^@\s<>(),;:".]+)+$')
_ZONE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+)*$")
# Files in a zoneinfo tree that load but are not places: the machine's own zone, a POSIX default, a dummy.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})
# Zones that are not places but are accepted: UTC never has summer time, and saying so is a clear choice.
_UTC_NAMES = frozenset({"UTC", "Etc/UTC"})
# What people mean by the fixed-offset and POSIX-rule names; the tz database links some of them to
# places nobody means (EST is a link to America/Panama).
_ZONE_MEANT = {
    "EST": "America/New_York",
    "EDT": "America/New_York",
    "EST5EDT": "America/New_York",
    "CST": "America/Chicago",
    "CDT": "America/Chicago",
    "CST6CDT": "America/Chicago",
    "MST": "America/Denver",
    "MDT": "America/Denver",
    "MST7MDT": "America/Denver",
    "PST": "America/Los_Angeles",
    "PDT": "America/Los_Angeles",
    "PST8PDT": "America/Los_Angeles",
    "HST": "Pacific/Honolulu",
    "CET": "Europe/Paris",
    "MET": "Europe/Paris",
    "EET": "Europe/Athens",
    "WET": "Europe/Lisbon",
}
MAX_KEYWORDS = 50


@dataclass(frozen=True)
class PlanIssue:
    """One problem in a plan file: 1-based line and column, and a field path like `connections[1].stage`."""

    filename: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.filename}:{self.line}:{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class PlanInvalid(ValueError):
    """Every problem found in a plan file, in the order they appear in it."""

    def __init__(self, issues: Sequence[PlanIssue]) -> None:
        self.issues = list(issues)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)


def parse_plan(text: str, filename: str) -> Plan:
    """Read a focus plan; raise PlanInvalid listing every problem at once."""
    checker = _Checker(filename)
    plan = checker.read(text)
    if checker.issues or plan is None:
        raise PlanInvalid(checker.sorted_issues())
    return plan


@dataclass(frozen=True)
class _Item:
    """A value node with its field path and, when it came from a mapping, the key naming it."""

    node: Node
    path: str
    key: Node | None = None


@dataclass
class _Entry:
    """What one connection entry yielded, kept even when it is invalid, for the cross-entry rules."""

    connection: Connection | None = None
    name: tuple[str, _Item] | None = None
    emails: list[tuple[str, _Item]] = field(default_factory=list)
    target: bool | None = None  # None: unknown, because the entry or its target field is broken


class _Checker:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.issues: list[PlanIssue] = []
        self.hours: WorkingHours | None = None  # once read: preferred windows must lie inside them

    def sorted_issues(self) -> list[PlanIssue]:
        unique = list(dict.fromkeys(self.issues))
        return sorted(unique, key=lambda issue: (issue.line, issue.column))

    # -- reporting ---------------------------------------------------------------------------------------

    def add(self, line: int, column: int, path: str, message: str) -> None:
        self.issues.append(PlanIssue(self.filename, line, column, path, message))

    def at_node(self, node: Node, path: str, message: str) -> None:
        mark = node.start_mark
        self.add(mark.line + 1, mark.column + 1, path, message)

    def at(self, item: _Item, message: str, *, path: str | None = None) -> None:
        # An empty value (`email:`) is marked where the next token starts, often the next line; the key is
        # where the reader should look.
        implicit_null = isinstance(item.node, ScalarNode) and item.node.tag == _NULL and item.node.value == ""
        node = item.key if implicit_null and item.key is not None else item.node
        self.at_node(node, item.path if path is None else path, message)

    def at_key(self, item: _Item, message: str) -> None:
        self.at_node(item.key if item.key is not None else item.node, item.path, message)

    # -- YAML ---------------------------------------------------------------------------------------------

    def compose(self, text: str) -> Node | None:
        deep = first_too_deep(text, _MAX_NESTING)
        if deep is not None:
            line, column = _position_of(text, deep)
            self.add(line, column, "", f"invalid YAML: nested more than {_MAX_NESTING} levels deep")
            return None
        try:
            with warnings.catch_warnings():
                # A reused anchor is legal YAML 1.2; ruamel's warning about it would only leak to stderr.
                warnings.simplefilter("ignore")
                node: Node | None = YAML(typ="rt").compose(text)
            return node
        except MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            detail = _yaml_detail(err.context, err.problem)
            line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
            self.add(line, column, "", f"invalid YAML: {detail}")
        except ReaderError as err:
            line, column = _position_of(text, int(err.position))
            character = err.character
            shown = f"#x{character:04x}" if isinstance(character, int) else repr(character)
            self.add(line, column, "", f"invalid YAML: character {shown} is not allowed: {err.reason}")
        except YAMLError as err:
            self.add(1, 1, "", f"invalid YAML: {str(err).strip() or type(err).__name__}")
        except RecursionError:
            self.add(1, 1, "", "invalid YAML: nested too deeply to read")
        except AssertionError as err:
            # ruamel asserts (rather than raising a YAMLError) on a %YAML directive it does not know.
            self.add(1, 1, "", f"invalid YAML: {err or 'the document cannot be read'}")
        return None

    def read(self, text: str) -> Plan | None:
        root = self.compose(text)
        if self.issues:
            return None
        if root is None or (isinstance(root, ScalarNode) and root.tag == _NULL and root.value == ""):
            self.add(1, 1, "", "the plan is empty: it needs " + ", ".join(REQUIRED_TOP_KEYS))
            return None
        fields = self.mapping(_Item(root, ""), TOP_KEYS, required=REQUIRED_TOP_KEYS)
        if fields is None:
            return None
        owner = self.owner(fields["owner"]) if "owner" in fields else None
        timezone = self.timezone(fields["timezone"]) if "timezone" in fields else None
        mindset = self.text(fields["mindset"]) if "mindset" in fields else None
        hours = self.working_hours(fields["working_hours"]) if "working_hours" in fields else None
        self.hours = hours
        review = self.review(fields["review"]) if "review" in fields else None
        owner_email = owner.email if owner is not None else None
        connections = (
            self.connections(fields["connections"], owner_email) if "connections" in fields else None
        )
        if owner is None or timezone is None or mindset is None or hours is None or review is None:
            return None
        placement = self.placement(_given(fields, "placement"), timezone)
        if connections is None or placement is None:
            return None
        return Plan(owner, timezone, mindset, hours, review, connections, placement)

    # -- structure ----------------------------------------------------------------------------------------

    def mapping(self, item: _Item, known: Sequence[str], required: Iterable[str]) -> dict[str, _Item] | None:
        node = item.node
        if not isinstance(node, MappingNode):
            what = "the plan must be" if not item.path else "expected"
            self.at(item, f"{what} a mapping with the keys {', '.join(known)}; got {_describe(node)}")
            return None
        fields: dict[str, _Item] = {}
        suggested: set[str] = set()
        merged = False
        for key, value in node.value:
            if not (isinstance(key, ScalarNode) and key.tag == _STR):
                message = (
                    "merge keys (<<) are not supported: write the keys out"
                    if key.tag == _MERGE
                    else f"keys must be names such as '{known[0]}', got {_describe(key)}"
                )
                # Whatever a merge would have brought in is unknown, so "required" would only be noise.
                merged = merged or key.tag == _MERGE
                self.at_node(key, item.path, message)
                continue
            name = key.value
            path = f"{item.path}.{name}" if item.path else name
            if name not in known:
                suggestion = _closest_key(name, known)
                hint = f"did you mean '{suggestion}'?" if suggestion else f"known keys: {', '.join(known)}"
                self.at_node(key, path, f"unknown key '{name}' ({hint})")
                if suggestion:
                    suggested.add(suggestion)
                continue
            if name in fields:
                first = fields[name].key
                where = (
                    f"{first.start_mark.line + 1}:{first.start_mark.column + 1}" if first is not None else "?"
                )
                self.at_node(key, path, f"duplicate key '{name}' (first given at {where})")
                continue
            fields[name] = _Item(value, path, key)
        for name in required:
            # A misspelt key already has its own issue naming this one; saying "required" too is noise.
            if name not in fields and name not in suggested and not merged:
                path = f"{item.path}.{name}" if item.path else name
                self.at(item, "is required", path=path)
        return fields

    def sequence(self, item: _Item, example: str) -> list[_Item] | None:
        node = item.node
        if isinstance(node, SequenceNode):
            return [_Item(child, f"{item.path}[{i}]") for i, child in enumerate(node.value)]
        self.at(item, f"expected a list such as {example}, got {_describe(node)}")
        return None

    # -- scalars ------------------------------------------------------------------------------------------

    def text(self, item: _Item, *, empty_ok: bool = False) -> str | None:
        node = item.node
        if isinstance(node, ScalarNode) and node.tag == _STR:
            if node.style is None and node.value.lower() in _YAML11_BOOLEANS:
                self.at(item, f"'{node.value}' reads as a boolean in YAML 1.1; quote it if you mean the text")
                return None
            value: str = node.value.strip()
            if not value and not empty_ok:
                self.at(item, "must not be empty")
                return None
            # Names and actions end up in calendar events; control characters would break some readers.
            if any((ord(ch) < 32 and ch not in "\n\t") or ord(ch) == 127 for ch in value):
                self.at(item, "contains a control character; remove it")
                return None
            return value
        if isinstance(node, ScalarNode) and node.tag == _NULL:
            if empty_ok:
                return ""
            self.at(item, "must not be empty")
            return None
        hint = " (quote it to use it as text)" if _is_plain_value(node) else ""
        self.at(item, f"expected text, got {_describe(node)}{hint}")
        return None

    def flag(self, item: _Item) -> bool | None:
        node = item.node
        if isinstance(node, ScalarNode) and node.tag == _BOOL:
            return str(node.value).lower() in ("true", "yes", "on")
        quoted = isinstance(node, ScalarNode) and node.tag == _STR and node.value.lower() in ("true", "false")
        self.at(item, f"expected true or false{' without quotes' if quoted else ''}, got {_describe(node)}")
        return None

    def choice(self, item: _Item, choices: Sequence[str]) -> str | None:
        value = self.text(item)
        if value is None:
            return None
        if value.lower() not in choices:
            self.at(item, f"must be one of {', '.join(choices)}")
            return None
        return value.lower()

    def cadence(self, item: _Item) -> Cadence | None:
        node = item.node
        if isinstance(node, ScalarNode) and node.tag == _STR:
            try:
                return parse_cadence(node.value)
            except CadenceError as err:
                self.at(item, str(err))
                return None
        self.at(
            item, f"expected a cadence such as 'week', '2 weeks', 'month' or 'quarter', got {_describe(node)}"
        )
        return None

    def duration(self, item: _Item) -> timedelta | None:
        node = item.node
        if isinstance(node, ScalarNode) and node.tag == _STR:
            try:
                return parse_duration(node.value)
            except CadenceError as err:
                self.at(item, str(err))
                return None
        self.at(item, f"expected a duration such as '30m', '1h' or '1h30m', got {_describe(node)}")
        return None

    def clock(self, item: _Item) -> time | None:
        node = item.node
        # An int tag is YAML 1.1 reading an unquoted 17:30 as base 60; the text is still the time meant.
        if isinstance(node, ScalarNode) and node.tag in (_STR, _INT):
            match = _CLOCK_RE.match(node.value)
            if match and int(match.group(1)) < 24 and int(match.group(2)) < 60:
                return time(int(match.group(1)), int(match.group(2)))
        self.at(item, f'expected a time of day such as "09:00" (24-hour HH:MM), got {_describe(node)}')
        return None

    def email(self, item: _Item) -> str | None:
        value = self.text(item)
        if value is None:
            return None
        if not _EMAIL_RE.match(value):
            self.at(item, f"'{_short(value)}' is not an email address")
            return None
        return value.lower()

    # -- sections -----------------------------------------------------------------------------------------

    def owner(self, item: _Item) -> Owner | None:
        fields = self.mapping(item, OWNER_KEYS, required=("name",))
        if fields is None:
            return None
        name = self.text(fields["name"]) if "name" in fields else None
        given = _given(fields, "email")
        email = self.email(given) if given is not None else None
        if name is None or (given is not None and email is None):
            return None
        return Owner(name, email)

    def timezone(self, item: _Item) -> str | None:
        name = self.text(item)
        if name is None:
            return None
        places = _location_zones()
        # Without a zone.tab (a stripped-down system) places cannot be told apart; accept what loads.
        if _is_zone(name) and (name in _UTC_NAMES or not places or name in places):
            return name
        if _is_zone(name):
            meant = _location_for(name)
            advice = f"the location zone '{meant}'" if meant else "a location zone such as 'America/New_York'"
            self.at(
                item,
                f"'{_short(name)}' is a fixed-offset or legacy zone name: it does not follow a place's "
                f"summer time, so touchpoints would shift by an hour; use {advice}",
            )
            return None
        suggestion = _closest_zone(name)
        hint = f" (did you mean '{suggestion}'?)" if suggestion else ""
        self.at(item, f"'{_short(name)}' is not an IANA time zone such as 'Europe/London'{hint}")
        return None

    def working_hours(self, item: _Item) -> WorkingHours | None:
        fields = self.mapping(item, HOURS_KEYS, required=HOURS_KEYS)
        if fields is None:
            return None
        days = self.days(fields["days"]) if "days" in fields else None
        start = self.clock(fields["start"]) if "start" in fields else None
        end = self.clock(fields["end"]) if "end" in fields else None
        if start is None or end is None:
            return None
        if start >= end:
            self.at(fields["end"], f"must be later than start ({start:%H:%M})")
            return None
        if days is None:
            return None
        return WorkingHours(days, start, end)

    def days(self, item: _Item) -> frozenset[int] | None:
        entries = self.sequence(item, "[mon, tue, wed, thu, fri]")
        if entries is None:
            return None
        if not entries:
            self.at(item, "must list at least one working day, such as [mon, tue, wed, thu, fri]")
            return None
        seen: set[int] = set()
        ok = True
        for entry in entries:
            value = self.text(entry)
            if value is None:
                ok = False
                continue
            day = value.lower()
            if day not in WEEKDAYS:
                guess = difflib.get_close_matches(day, WEEKDAYS, n=1, cutoff=0.6)
                hint = f" (did you mean '{guess[0]}'?)" if guess else ""
                self.at(entry, f"must be one of {', '.join(WEEKDAYS)}{hint}")
                ok = False
            elif WEEKDAYS.index(day) in seen:
                self.at(entry, f"'{day}' is listed twice")
                ok = False
            else:
                seen.add(WEEKDAYS.index(day))
        return frozenset(seen) if ok else None

    def review(self, item: _Item) -> Review | None:
        fields = self.mapping(item, REVIEW_KEYS, required=("every",))
        if fields is None:
            return None
        every = self.cadence(fields["every"]) if "every" in fields else None
        if every is not None and every not in REVIEW_CADENCES:
            self.at(
                fields["every"],
                "must be month or quarter: the method revisits the plan every month or quarter",
            )
            every = None
        given = _given(fields, "duration")
        duration = self.duration(given) if given is not None else DEFAULT_DURATION
        given = _given(fields, "kickoff")
        kickoff = self.flag(given) if given is not None else True
        if every is None or duration is None or kickoff is None:
            return None
        return Review(every, duration, kickoff)

    def connections(self, item: _Item, owner_email: str | None) -> tuple[Connection, ...] | None:
        items = self.sequence(item, "[{name: ..., stage: find, ...}]")
        if items is None:
            return None
        if not items:
            self.at_key(item, "must list one to five connections; found none")
            return None
        if len(items) > MAX_CONNECTIONS:
            # Shown at the first entry too many, but the field is the list: which one to drop is a choice.
            message = f"at most five connections: the method focuses on up to five (found {len(items)})"
            self.at(items[MAX_CONNECTIONS], message, path=item.path)
        entries = [self.connection(entry) for entry in items]
        self.check_names(entries)
        self.check_emails(entries, owner_email)
        targets = [entry.target for entry in entries]
        if True not in targets and None not in targets:
            self.at_key(
                item, "at least one connection must be a target (target: true): a new connection to create"
            )
        if len(items) > MAX_CONNECTIONS or any(entry.connection is None for entry in entries):
            return None
        return tuple(entry.connection for entry in entries if entry.connection is not None)

    def connection(self, item: _Item) -> _Entry:
        required = ("name", "stage", "every", "next_action")
        fields = self.mapping(item, CONNECTION_KEYS, required=required)
        entry = _Entry()
        if fields is None:
            return entry
        name = self.text(fields["name"]) if "name" in fields else None
        if name is not None and name.startswith("@"):
            # '@review' and the like are the log's own names (`circleback review done`).
            self.at(fields["name"], "must not start with '@'")
            name = None
        if name is not None:
            entry.name = (name, fields["name"])
        given = _given(fields, "kind")
        kind = self.choice(given, [k.value for k in ConnectionKind]) if given is not None else "person"
        given = _given(fields, "email")
        email = self.email(given) if given is not None else None
        if email is not None and given is not None:
            entry.emails.append((email, given))
        emails_ok = given is None or email is not None
        given = _given(fields, "emails")
        addresses = self.sequence(given, "[grace@work.example]") if given is not None else []
        emails_ok = emails_ok and addresses is not None
        for address in addresses or []:
            value = self.email(address)
            if value is None:
                emails_ok = False
            elif value not in (known for known, _ in entry.emails):
                entry.emails.append((value, address))
        keywords = self.keywords(_given(fields, "keywords"))
        given = _given(fields, "target")
        entry.target = self.flag(given) if given is not None else False
        stage = self.choice(fields["stage"], [s.value for s in Stage]) if "stage" in fields else None
        every = self.cadence(fields["every"]) if "every" in fields else None
        given = _given(fields, "duration")
        duration = self.duration(given) if given is not None else DEFAULT_DURATION
        action = self.text(fields["next_action"]) if "next_action" in fields else None
        given = _given(fields, "notes")
        notes = self.text(given, empty_ok=True) if given is not None else ""
        given = _given(fields, "prefer")
        prefer = self.windows(given) if given is not None else None
        if given is not None and prefer is None:
            return entry
        role_ok, role = self.role(_given(fields, "role"))
        given = _given(fields, "id")
        ident = self.text(given) if given is not None else None
        if (
            given is not None
            and ident is not None
            and (ident != ident.strip().casefold() or ident.startswith("@"))
        ):
            self.at(given, "an id is lower case, without spaces at its ends, and does not start with '@'")
            return entry
        if (
            not role_ok
            or (given is not None and ident is None)
            or name is None
            or kind is None
            or not emails_ok
            or keywords is None
            or entry.target is None
            or stage is None
            or every is None
            or duration is None
            or action is None
            or notes is None
        ):
            return entry
        further = tuple(address for address, _ in entry.emails if address != email)
        entry.connection = Connection(
            name=name,
            kind=ConnectionKind(kind),
            stage=Stage(stage),
            every=every,
            duration=duration,
            next_action=action,
            target=entry.target,
            email=email,
            emails=further,
            keywords=keywords,
            notes=notes,
            prefer=prefer,
            role=role,
            id=ident,
        )
        return entry

    def role(self, item: _Item | None) -> tuple[bool, Role | None]:
        """The optional role, and whether it was valid (an invalid one is recorded as an issue)."""
        if item is None:
            return True, None
        value = self.choice(item, [r.value for r in Role])
        return value is not None, None if value is None else Role(value)

    def keywords(self, item: _Item | None) -> tuple[str, ...] | None:
        if item is None:
            return ()
        entries = self.sequence(item, "[meetup, women in tech]")
        if entries is None:
            return None
        if len(entries) > MAX_KEYWORDS:
            # Every keyword is compared with every calendar event's title: a few name a meeting, thousands
            # would only slow every cycle down.
            self.at(
                item,
                f"at most {MAX_KEYWORDS} keywords per connection (found {len(entries)}): "
                "keep the words that name this connection's meetings",
            )
            return None
        # A dict keeps the first spelling's order; a list's `in` made this quadratic in the keywords.
        words: dict[str, None] = {}
        for entry in entries:
            value = self.text(entry)
            if value is None:
                return None
            words.setdefault(value.lower(), None)
        return tuple(words)

    def check_names(self, entries: Sequence[_Entry]) -> None:
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            if entry.name is None:
                continue
            if entry.connection is not None and entry.connection.id is not None:
                ident = entry.connection.id
                clash = next(
                    (
                        j
                        for j, e in enumerate(entries[:index])
                        if e.connection and e.connection.ident == ident
                    ),
                    None,
                )
                if clash is not None:
                    self.at(
                        entry.name[1],
                        f"its id '{_short(ident)}' is connections[{clash}]'s too; ids must be unique",
                    )
                    entry.connection = None
                    continue
            name, item = entry.name
            folded = name.casefold()
            if folded in seen:
                self.at(
                    item, f"'{_short(name)}' is already connections[{seen[folded]}]; names must be unique"
                )
                entry.connection = None
            else:
                seen[folded] = index

    def check_emails(self, entries: Sequence[_Entry], owner_email: str | None) -> None:
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            for address, item in entry.emails:
                if address == owner_email:
                    self.at(item, f"'{address}' is the owner's own address: it would match every meeting")
                    entry.connection = None
                elif seen.get(address, index) != index:
                    self.at(item, f"'{address}' already identifies connections[{seen[address]}]")
                    entry.connection = None
                else:
                    seen[address] = index

    # -- placement (optional) -------------------------------------------------------------------------------

    def placement(self, item: _Item | None, timezone: str | None) -> Placement | None:
        """The `placement:` section; without it (or a key of it), the defaults of `Placement`, with the
        holidays of the country the time zone is in."""
        default_holidays = _country_of_zone(timezone) if timezone is not None else None
        if item is None:
            return Placement(holidays=default_holidays)
        fields = self.mapping(item, PLACEMENT_KEYS, required=())
        if fields is None:
            return None
        defaults = Placement()
        given = _given(fields, "prefer")
        prefer = self.windows(given) if given is not None else defaults.prefer
        given = _given(fields, "buffer")
        buffer = self.buffer(given) if given is not None else defaults.buffer
        given = _given(fields, "max_per_day")
        per_day = self.per_day(given) if given is not None else defaults.max_per_day
        given = _given(fields, "holidays")
        code = self.holidays(given) if given is not None else (default_holidays or "")
        if prefer is None or buffer is None or per_day is None or code is None:
            return None
        return Placement(prefer, buffer, per_day, code or None)

    def windows(self, item: _Item) -> tuple[Window, ...] | None:
        entries = self.sequence(item, '["10:00-12:00", "14:00-16:30"]')
        if entries is None:
            return None
        if not entries:
            self.at(item, 'must list at least one window such as "10:00-12:00" (or leave the key out)')
            return None
        windows = [self.window(entry) for entry in entries]
        if any(window is None for window in windows):
            return None
        return tuple(window for window in windows if window is not None)

    def window(self, item: _Item) -> Window | None:
        node = item.node
        match = _WINDOW_RE.match(node.value) if isinstance(node, ScalarNode) and node.tag == _STR else None
        clocks = [(int(match.group(i)), int(match.group(i + 1))) for i in (1, 3)] if match else []
        if not match or any(h > 23 or m > 59 for h, m in clocks):
            self.at(item, f'expected a window of the day such as "10:00-12:00", got {_describe(node)}')
            return None
        window = Window(time(*clocks[0]), time(*clocks[1]))
        if window.start >= window.end:
            self.at(item, f"the window must end after it starts ({window.start:%H:%M})")
            return None
        hours = self.hours
        if hours is not None and not (hours.start <= window.start and window.end <= hours.end):
            self.at(item, f"{window} is not inside working hours ({hours.start:%H:%M}-{hours.end:%H:%M})")
            return None
        return window

    def buffer(self, item: _Item) -> timedelta | None:
        node = item.node
        if isinstance(node, ScalarNode) and node.tag in (_STR, _INT) and node.value.strip() in _ZEROES:
            return timedelta(0)
        value = self.duration(item)
        if value is not None and value > MAX_BUFFER:
            self.at(item, "must be 2h at most: a longer buffer would leave no room in a busy day")
            return None
        return value

    def per_day(self, item: _Item) -> int | None:
        node = item.node
        if isinstance(node, ScalarNode) and node.tag == _INT and node.value.isdigit():
            value = int(node.value)
            if 1 <= value <= MAX_PER_DAY_LIMIT:
                return value
        self.at(item, f"expected a whole number from 1 to {MAX_PER_DAY_LIMIT}, got {_describe(node)}")
        return None

    def holidays(self, item: _Item) -> str | None:
        """A region code such as 'GB' or 'GB-SCT'; '' for `none` or `false`; None when invalid."""
        node = item.node
        if (
            isinstance(node, ScalarNode)
            and node.tag == _BOOL
            and node.value.lower() in ("false", "no", "off")
        ):
            return ""
        if isinstance(node, ScalarNode) and node.tag == _STR and node.value.strip().lower() == "none":
            return ""
        if not (isinstance(node, ScalarNode) and node.tag == _STR):
            self.at(item, f"expected a country code such as GB or GB-SCT (or none), got {_describe(node)}")
            return None
        code: str = node.value.strip()
        country, _, subdivision = code.partition("-")
        if country.upper() not in _holiday_countries():
            self.at(item, f"'{_short(code)}' is not an ISO 3166 country with known public holidays")
            return None
        if not subdivision:
            return country.upper()
        subdivisions = _subdivisions(country.upper())
        known = {name.upper(): name for name in subdivisions}
        if subdivision.upper() not in known:
            listed = ", ".join(subdivisions[:12])
            more = ", ..." if len(subdivisions) > 12 else ""
            choices = f"one of {listed}{more}" if listed else "none: give the country alone"
            self.at(item, f"'{_short(subdivision)}' is not a subdivision of {country.upper()} ({choices})")
            return None
        return f"{country.upper()}-{known[subdivision.upper()]}"


def _given(fields: dict[str, _Item], name: str) -> _Item | None:
    """The item for an optional key, or None when it is absent or written with no value."""
    item = fields.get(name)
    if item is None or (isinstance(item.node, ScalarNode) and item.node.tag == _NULL):
        return None
    return item


def _is_plain_value(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag in (_BOOL, _INT, _FLOAT, _TIMESTAMP)


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    tag, value = node.tag, str(node.value)
    if tag == _NULL:
        return "nothing"
    if tag == _BOOL:
        return f"the boolean {value}"
    if tag in (_INT, _FLOAT):
        return f"the number {value}"
    if tag == _TIMESTAMP:
        return f"the date {value}"
    if tag == _STR:
        return f"'{_short(value)}'"
    return f"a value tagged {tag}"


def _short(value: str, limit: int = 40) -> str:
    flat = " ".join(value.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _closest_key(name: str, known: Sequence[str]) -> str | None:
    folded = name.strip().lower().replace("-", "_").replace(" ", "_")
    if folded in known:
        return folded
    synonyms = {word: key for word, key in _SYNONYMS.items() if key in known}
    if folded in synonyms:
        return synonyms[folded]
    match = difflib.get_close_matches(folded, [*known, *synonyms], n=1, cutoff=0.7)
    if not match:
        return None
    return synonyms.get(match[0], match[0])


def _is_zone(name: str) -> bool:
    if not _ZONE_RE.match(name) or name in _NOT_ZONES or name.startswith(("posix/", "right/")):
        return False
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        # ValueError: not a normalised relative key; KeyError: ZoneInfoNotFoundError; OSError: a directory.
        return False
    return True


@cache
def _zone_names() -> dict[str, str]:
    return {zone.lower(): zone for zone in available_timezones() if zone not in _NOT_ZONES}


def _tz_data_files(name: str) -> list[str]:
    """A tz database table's text wherever zoneinfo finds zones: the system's, then the tzdata package's."""
    texts: list[str] = []
    for directory in zoneinfo.TZPATH:
        try:
            with open(f"{directory}/{name}", encoding="utf-8") as handle:
                texts.append(handle.read())
        except (OSError, UnicodeDecodeError):
            continue
    with contextlib.suppress(ModuleNotFoundError, OSError, UnicodeDecodeError):
        texts.append(resources.files("tzdata.zoneinfo").joinpath(name).read_text(encoding="utf-8"))
    return texts


@cache
def _location_zones() -> frozenset[str]:
    """The zones that stand for places: zone.tab lists them; links like US/Eastern or GB are not in it."""
    names: set[str] = set()
    for text in _tz_data_files("zone.tab"):
        for line in text.splitlines():
            columns = line.split("\t")
            if len(columns) >= 3 and not line.startswith("#"):
                names.add(columns[2].strip())
    return frozenset(names)


@cache
def _zone_links() -> dict[str, str]:
    """Legacy name -> the zone it points at, from the compiled tz source (lines 'L TARGET NAME')."""
    links: dict[str, str] = {}
    for text in reversed(_tz_data_files("tzdata.zi")):
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "L":
                links[parts[2]] = parts[1]
    return links


def _location_for(name: str) -> str | None:
    if name in _ZONE_MEANT:
        return _ZONE_MEANT[name]
    target = _zone_links().get(name)
    return target if target is not None and target in _location_zones() else None


def _closest_zone(name: str) -> str | None:
    names = _zone_names()
    folded = name.strip().lower().replace(" ", "_")
    if folded in names:
        return names[folded]
    match = difflib.get_close_matches(folded, list(names), n=1, cutoff=0.8)
    return names[match[0]] if match else None


def first_too_deep(text: str, limit: int) -> int | None:
    """The index of the bracket that opens a level past `limit`, counting `[` and `{` naively.

    ruamel's scanner slows down quadratically on a long run of open brackets (seconds for a few thousand)
    before recursing too deeply, and tomllib recurses once per level, so a pathological file is refused
    before it reaches either parser. Counting brackets inside quotes or comments too only matters hundreds
    of levels away from any real plan or config.
    """
    depth = 0
    for index, char in enumerate(text):
        if char in "[{":
            depth += 1
            if depth > limit:
                return index
        elif char in "]}":
            depth = max(depth - 1, 0)
    return None


def _yaml_detail(context: object, problem: object) -> str:
    context_text, problem_text = str(context or "").strip(), str(problem or "").strip()
    if not problem_text:
        return context_text or "the document cannot be read"
    if not context_text:
        return problem_text
    # ruamel phrases some pairs as one sentence split in two ("expected a single document", "but found...").
    if problem_text.startswith("but "):
        return f"{context_text}, {problem_text}"
    return f"{problem_text} ({context_text})"


def _position_of(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


@cache
def _holiday_countries() -> frozenset[str]:
    """ISO 3166 alpha-2 codes (and aliases such as UK) the holidays package knows.

    Read from the package's registry, which names every country without importing its module: listing
    them through `list_supported_countries` imports all 250 (a tenth of a second at every start, for a
    check of one code). tests/test_plan.py checks both agree."""
    try:
        from holidays.registry import COUNTRIES
    except ImportError:  # a holidays release without the registry: the slower public listing
        return frozenset(code for code in holidays.list_supported_countries() if len(code) == 2)
    return frozenset(
        name for entry in COUNTRIES.values() for name in entry[1:] if len(name) == 2 and name.isupper()
    )


@cache
def _subdivisions(country: str) -> list[str]:
    """The subdivision codes of one known country (GB: ENG, NIR, SCT, WLS)."""
    return list(holidays.country_holidays(country).subdivisions)


@cache
def _zone_countries() -> dict[str, str]:
    """IANA zone -> ISO 3166 country, from the zone.tab that ships with tzdata."""
    table = resources.files("tzdata.zoneinfo").joinpath("zone.tab").read_text(encoding="utf-8")
    out: dict[str, str] = {}
    for line in table.splitlines():
        if line and not line.startswith("#"):
            parts = line.split("\t")
            if len(parts) >= 3:
                out[parts[2]] = parts[0]
    return out


def _country_of_zone(zone: str) -> str | None:
    """The country whose holidays a plan in `zone` gets by default, if the holidays package knows it."""
    country = _zone_countries().get(zone)
    return country if country is not None and country in _holiday_countries() else None
