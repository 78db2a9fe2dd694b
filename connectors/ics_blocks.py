"""Tolerant lexing of ICS bytes: decode, unfold, repair broken folding, split into top-level components.

icalendar parses a stream whole or not at all, and exports in the wild are often broken in one place.
Splitting the stream here, before icalendar sees it, lets the reader skip one bad event (naming its line)
and keep the rest, and gives every warning a line number to point at.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

_PROPERTY_START = re.compile(r"[A-Za-z0-9-]+[;:]")
_CALENDAR_MARK = re.compile(rb"BEGIN:VCALENDAR", re.IGNORECASE)
_EVENT_MARK = re.compile(rb"BEGIN:VEVENT", re.IGNORECASE)
_HTML_MARK = re.compile(rb"<(?:!doctype\s+html|html|head|body)\b", re.IGNORECASE)

# Components read for their content; any other top-level component is passed over silently.
WANTED = frozenset({"VEVENT", "VTIMEZONE"})
# Components that never nest, so their BEGIN inside an open component means that one was cut short.
_TOP_LEVEL = frozenset(
    {"VCALENDAR", "VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY", "VTIMEZONE", "VAVAILABILITY"}
)


@dataclass
class Block:
    """One top-level component as logical (unfolded) lines, BEGIN and END included."""

    name: str
    line: int  # physical line number of its BEGIN, for messages
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # repairs made while lexing, reported with the UID

    @property
    def text(self) -> str:
        return "\r\n".join(self.lines) + "\r\n"

    def uid(self) -> str | None:
        """The UID as written, found without parsing, so a block icalendar rejects can still be named."""
        return self.first("UID")

    def first(self, name: str) -> str | None:
        """The value of the first `name` property, as written."""
        prefix = name.upper()
        for text in self.lines:
            if text[: len(prefix)].upper() == prefix and text[len(prefix) : len(prefix) + 1] in (":", ";"):
                value = text.partition(":")[2].strip()
                if value:
                    return value
        return None


@dataclass
class Lexed:
    blocks: list[Block]
    properties: dict[str, str]  # calendar-level properties by upper-case name; the first one wins
    warnings: list[str]


def not_a_calendar(data: bytes) -> str | None:
    """Why these bytes cannot be a calendar (empty, an HTML page, something else), or None if they may be."""
    if not data or data.isspace():
        return "empty, not a calendar"
    if _CALENDAR_MARK.search(data) or _EVENT_MARK.search(data):
        return None
    head = data[:4096].lstrip(codecs.BOM_UTF8 + b" \t\r\n")
    if head.startswith(b"<") and _HTML_MARK.search(head):
        return "an HTML page, not a calendar"
    return "not an iCalendar file (no BEGIN:VCALENDAR)"


def lex(
    data: bytes,
    source: str,
    *,
    event_properties: frozenset[str] | None = None,
    skip: Sequence[tuple[int, int]] = (),
) -> Lexed:
    """Split ICS bytes into blocks; never raises. Warnings name `source` and a line number.

    With `event_properties`, a VEVENT keeps only those properties and none of its subcomponents: the
    reader uses a dozen properties, and not handing icalendar the rest (descriptions, attachments, alarms)
    makes parsing several times cheaper and keeps a broken irrelevant property from costing an event.
    `skip` lists byte ranges [start, end) of whole components, in order, to pass over unread (events that
    cannot reach the window being read, connectors.ics_window); line numbers stay those of the file.
    """
    warnings: list[str] = []
    reason = not_a_calendar(data)
    if reason is not None:
        return Lexed([], {}, [f"{source}: {reason}; no events read"])
    lines, undecodable, first_bad = _logical_lines(data, skip)
    if undecodable:
        warnings.append(
            f"{source}: {undecodable} line(s) are not valid UTF-8 (first at line {first_bad}); "
            "read them as Windows-1252"
        )
    splitter = _Splitter(source, event_properties)
    for number, text in lines:
        splitter.feed(number, text)
    splitter.finish()
    return Lexed(splitter.blocks, splitter.properties, warnings + splitter.warnings)


def _pieces(data: bytes, skip: Sequence[tuple[int, int]]) -> list[tuple[int, bytes]]:
    """The bytes not skipped, each piece with the number of its first line in the file. A skipped range
    starts at a line's start and ends after a line break, so counting LFs counts its lines."""
    pieces: list[tuple[int, bytes]] = []
    line, at = 1, 0
    for start, end in skip:
        pieces.append((line, data[at:start]))
        line += data.count(b"\n", at, end)
        at = end
    pieces.append((line, data[at:] if at else data))
    return pieces


def _logical_lines(
    data: bytes, skip: Sequence[tuple[int, int]] = ()
) -> tuple[list[tuple[int, str]], int, int]:
    """Unfold before decoding, because a fold may split a multi-byte character in two."""
    pieces = _pieces(data, skip)
    if pieces[0][1].startswith(codecs.BOM_UTF8):
        pieces[0] = (1, pieces[0][1][len(codecs.BOM_UTF8) :])
    starts: list[int] = []
    parts: list[list[bytes]] = []
    for first, piece in pieces:
        for number, raw in enumerate(piece.splitlines(), first):
            if raw[:1] in (b" ", b"\t") and parts:
                parts[-1].append(raw[1:])
            else:
                starts.append(number)
                parts.append([raw])
    result: list[tuple[int, str]] = []
    undecodable = 0
    first_bad = 0
    for number, chunks in zip(starts, parts, strict=True):
        raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            # Older Outlook exports are Windows-1252; reading them so keeps accented names legible.
            text = raw.decode("cp1252", errors="replace")
            undecodable += 1
            first_bad = first_bad or number
        result.append((number, text))
    return result, undecodable, first_bad


class _Splitter:
    """A small state machine over logical lines; VCALENDAR wrappers are transparent, so concatenated
    calendars and bare VEVENTs are read too."""

    def __init__(self, source: str, event_properties: frozenset[str] | None) -> None:
        self.source = source
        self.event_properties = event_properties
        self.blocks: list[Block] = []
        self.properties: dict[str, str] = {}
        self.warnings: list[str] = []
        self._current: Block | None = None
        self._open: list[str] = []  # components open inside the current block
        self._stray: list[int] = []  # lines outside any component that are not properties
        self._dropping = False  # the last property line was left out, so its continuations go too

    def feed(self, number: int, text: str) -> None:
        if not text.strip():
            return
        head = text[:6].upper()
        if head == "BEGIN:":
            self._begin(number, text[6:].strip().upper())
        elif head[:4] == "END:":
            self._end(number, text[4:].strip().upper())
        elif self._current is None:
            self._calendar_line(number, text)
        else:
            self._component_line(number, text, self._current)

    def finish(self) -> None:
        if self._current is not None:
            self._drop(f"no END:{self._open[0]} before the end of the file")
        if self._stray:
            self.warnings.append(
                f"{self.source}: line {self._stray[0]}: ignored {len(self._stray)} line(s) outside any "
                "component that are not iCalendar content lines"
            )

    def _begin(self, number: int, name: str) -> None:
        current = self._current
        if current is None:
            if name != "VCALENDAR":
                self._current = Block(name, number, [f"BEGIN:{name}"])
                self._open = [name]
            return
        if name in _TOP_LEVEL:
            # A new top-level component while one is still open: the open one was cut short.
            self._drop(f"no END:{self._open[0]} before line {number}")
            self._begin(number, name)
            return
        self._open.append(name)
        if not self._filtered(current):
            current.lines.append(f"BEGIN:{name}")

    def _end(self, number: int, name: str) -> None:
        current = self._current
        if current is None:
            if name != "VCALENDAR":
                self._stray.append(number)
            return
        if name == self._open[-1]:
            self._open.pop()
            if not self._open or not self._filtered(current):
                current.lines.append(f"END:{name}")
            if not self._open:
                if current.name in WANTED:
                    self.blocks.append(current)
                self._current = None
            return
        self._drop(f"END:{name} at line {number} does not close BEGIN:{self._open[-1]}")

    def _drop(self, reason: str) -> None:
        current = self._current
        assert current is not None
        if current.name in WANTED:
            uid = current.uid()
            who = f"{current.name} {uid!r}" if uid else current.name
            self.warnings.append(f"{self.source}: line {current.line}: {who}: {reason}; skipped")
        self._current = None
        self._open = []

    def _calendar_line(self, number: int, text: str) -> None:
        if not _looks_like_property(text):
            self._stray.append(number)
            return
        self.properties.setdefault(_name(text), text.partition(":")[2].strip())

    def _filtered(self, current: Block) -> bool:
        return self.event_properties is not None and current.name == "VEVENT"

    def _component_line(self, number: int, text: str, current: Block) -> None:
        if _looks_like_property(text):
            keep = self.event_properties
            self._dropping = (
                keep is not None
                and current.name == "VEVENT"
                and (len(self._open) > 1 or _name(text) not in keep)
            )
            if not self._dropping:
                current.lines.append(text)
            return
        previous = current.lines[-1]
        if self._dropping:
            return  # the rest of a property the reader does not use: broken or not, it changes nothing
        if previous[:6].upper() == "BEGIN:":
            current.notes.append(f"line {number} is not a content line; ignored")
        else:
            # A continuation line that lost its leading space (a wrapped DESCRIPTION, typically).
            current.lines[-1] = previous + text
            current.notes.append(
                f"line {number} is not a content line (broken folding?); joined to the line before"
            )


def _name(text: str) -> str:
    end = len(text)
    for separator in (";", ":"):
        index = text.find(separator)
        if 0 <= index < end:
            end = index
    return text[:end].upper()


def _looks_like_property(text: str) -> bool:
    return _PROPERTY_START.match(text) is not None and ":" in text
