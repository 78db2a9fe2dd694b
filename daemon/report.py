"""The audit as a picture: one self-contained HTML page (inline SVG and CSS, nothing fetched from anywhere)
and the same timeline as a PNG for pasting into a document.

The timeline has one row per focus connection over the last and the next quarter: log entries (give and
ask) and planned touchpoints as marks, the cadence as faint ticks from the last meeting on, the span a
connection has been overdue as a red band, and the give/ask balance in its title. matplotlib draws it
without a display (its object API, no pyplot state), jinja2 fills the page with autoescaping on.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup

from schedules.audit import GIVE_RULE_OF_THUMB, Audit, Balance, ConnectionFacts, Section
from schedules.events import Interaction, InteractionKind
from schedules.model import Plan
from schedules.occurrence import Occurrence, OccurrenceKind, OccurrenceStatus

if TYPE_CHECKING:
    # matplotlib takes a second to import: only the --html and --png paths load it.
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

QUARTER = timedelta(days=91)
GIVE_COLOUR, ASK_COLOUR, PLANNED_COLOUR, OVERDUE_COLOUR = "#2e7d32", "#ef6c00", "#1565c0", "#c62828"
# Text stays text in the SVG (names are searchable and readable in the page), and ids and metadata do
# not change from run to run, so the same audit gives the same file.
_EPOCH = date(1970, 1, 1)  # matplotlib's default date epoch: a date is plotted as days since it


def _x(day: date) -> float:
    return float((day - _EPOCH).days)


def _style() -> AbstractContextManager[None]:
    import matplotlib

    return matplotlib.rc_context(
        {"svg.fonttype": "none", "svg.hashsalt": "circleback", "font.family": "DejaVu Sans"}
    )


@dataclass(frozen=True)
class Row:
    """What one timeline row shows."""

    facts: ConnectionFacts
    gives: tuple[date, ...]
    asks: tuple[date, ...]
    planned: tuple[date, ...]
    settled: tuple[tuple[date, OccurrenceStatus], ...]


@dataclass
class _Marks:
    gives: list[date] = field(default_factory=list)
    asks: list[date] = field(default_factory=list)
    planned: list[date] = field(default_factory=list)
    settled: list[tuple[date, OccurrenceStatus]] = field(default_factory=list)

    def row(self, facts: ConnectionFacts) -> Row:
        return Row(
            facts,
            tuple(sorted(self.gives)),
            tuple(sorted(self.asks)),
            tuple(sorted(self.planned)),
            tuple(sorted(self.settled)),
        )


def timeline_rows(
    plan: Plan,
    result: Audit,
    interactions: Sequence[Interaction],
    occurrences: Sequence[tuple[Occurrence, OccurrenceStatus]],
) -> list[Row]:
    zone = ZoneInfo(plan.timezone)
    first, last = result.today - QUARTER, result.today + QUARTER
    marks = {c.name.casefold(): _Marks() for c in plan.connections}
    for entry in interactions:
        day = entry.at.astimezone(zone).date()
        found = marks.get(entry.connection.casefold())
        if found is not None and first <= day <= result.today:
            (found.gives if entry.kind is InteractionKind.GIVE else found.asks).append(day)
    for occ, status in occurrences:
        found = marks.get((occ.connection or "").casefold())
        day = occ.start.astimezone(zone).date()
        if found is None or occ.kind is not OccurrenceKind.TOUCHPOINT or not first <= day <= last:
            continue
        if status in (OccurrenceStatus.PLANNED, OccurrenceStatus.PLACED):
            found.planned.append(day)
        elif status is not OccurrenceStatus.COMPLETED:  # a completed one shows as the entry it logged
            found.settled.append((day, status))
    return [marks[fact.name.casefold()].row(fact) for fact in result.facts]


def balance_phrase(balance: Balance) -> str:
    return f"give/ask: {balance.phrase()} (rule of thumb: about {GIVE_RULE_OF_THUMB:.0%} give)"


def timeline_figure(plan: Plan, result: Audit, rows: Sequence[Row]) -> Figure:
    from matplotlib.figure import Figure

    today = result.today
    figure = Figure(figsize=(11, 1.2 + 0.75 * max(len(rows), 1)), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    start, end = today - QUARTER, today + QUARTER
    count = len(rows)
    for index, row in enumerate(rows):
        y = count - 1 - index  # the plan's first connection on top
        _draw_row(axes, row, y, today, end)
    axes.axvline(_x(today), color="#444444", linestyle="--", linewidth=1)
    axes.set_xlim(_x(start), _x(end))
    axes.set_ylim(-0.7, count - 0.3)
    axes.set_yticks(
        list(range(count)),
        [f"{row.facts.name}\nevery {row.facts.connection.every}" for row in reversed(rows)],
    )
    for label, row in zip(axes.get_yticklabels(), reversed(rows), strict=True):
        if row.facts.overdue(today):
            label.set_color(OVERDUE_COLOUR)
            label.set_fontweight("bold")
    months = _month_starts(start, end)
    axes.set_xticks([_x(m) for m in months], [f"{m:%b %Y}" for m in months])
    axes.grid(axis="x", color="#dddddd")
    axes.set_title(
        f"{plan.owner.name}: focus connections around {today.isoformat()}\n{balance_phrase(result.balance)}"
    )
    axes.legend(handles=_legend(axes), loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=5, frameon=False)
    return figure


def _month_starts(start: date, end: date) -> list[date]:
    out, month = [], date(start.year, start.month, 1)
    while month <= end:
        if month >= start:
            out.append(month)
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return out


def _draw_row(axes: Axes, row: Row, y: int, today: date, end: date) -> None:
    facts = row.facts
    every = facts.connection.every
    if facts.due is not None and facts.overdue(today):
        axes.fill_between(
            [_x(facts.due), _x(today)],
            y - 0.35,
            y + 0.35,
            color=OVERDUE_COLOUR,
            alpha=0.18,
            linewidth=0,
        )
    # The cadence: where the next meetings fall due if the rhythm holds from the last one.
    anchor = facts.last_met or facts.due
    if anchor is not None:
        ticks, step = [], 1 if facts.last_met else 0
        while (due := every.add(anchor, step)) <= end and step < 200:
            ticks.append(_x(due))
            step += 1
        axes.vlines(ticks, y - 0.3, y + 0.3, colors="#9e9e9e", linewidth=1, linestyles="dotted")
    _marks(axes, row.gives, y, "o", GIVE_COLOUR, filled=True)
    _marks(axes, row.asks, y, "^", ASK_COLOUR, filled=True)
    _marks(axes, row.planned, y, "s", PLANNED_COLOUR, filled=False)
    _marks(axes, tuple(day for day, _ in row.settled), y, "x", OVERDUE_COLOUR, filled=True)


def _marks(axes: Axes, days: Sequence[date], y: int, marker: str, colour: str, *, filled: bool) -> None:
    if not days:
        return
    xs = [_x(d) for d in days]
    axes.scatter(
        xs,
        [y] * len(xs),
        marker=marker,
        s=64,
        c=colour if filled else "none",
        edgecolors=colour,
        linewidths=1.5,
        zorder=3,
    )


def _legend(axes: Axes) -> list[Artist]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return [
        Line2D([], [], marker="o", color=GIVE_COLOUR, linestyle="", label="give"),
        Line2D([], [], marker="^", color=ASK_COLOUR, linestyle="", label="ask"),
        Line2D(
            [], [], marker="s", color=PLANNED_COLOUR, markerfacecolor="none", linestyle="", label="planned"
        ),
        Line2D([], [], marker="x", color=OVERDUE_COLOUR, linestyle="", label="skipped or missed"),
        Patch(color=OVERDUE_COLOUR, alpha=0.18, label="overdue"),
    ]


def figure_svg(figure: Figure) -> str:
    buffer = io.StringIO()
    with _style():
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    # The page embeds the <svg> element itself; the XML prolog and DOCTYPE belong to a standalone file.
    return text[text.index("<svg") :]


def figure_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    with _style():
        figure.savefig(buffer, format="png", dpi=120, metadata={"Software": None})
    return buffer.getvalue()


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("daemon", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render_html(plan: Plan, result: Audit, rows: Sequence[Row], svg: str) -> str:
    today = result.today
    connections = [
        {
            "name": row.facts.name,
            "role": row.facts.connection.role.value if row.facts.connection.role else "",
            "target": row.facts.connection.target,
            "every": str(row.facts.connection.every),
            "last_met": row.facts.last_met.isoformat() if row.facts.last_met else "not yet",
            "due": row.facts.due.isoformat() if row.facts.due else "",
            "overdue": row.facts.overdue(today),
            "give": row.facts.balance.give,
            "ask": row.facts.balance.ask,
            "share": _percent(row.facts.balance),
        }
        for row in rows
    ]
    sections = [
        (section.value.capitalize(), [f.text for f in result.section(section)]) for section in Section
    ]
    template = _environment().get_template("report.html.j2")
    return template.render(
        owner=plan.owner.name,
        mindset=plan.mindset,
        today=today.isoformat(),
        balance=balance_phrase(result.balance),
        share=_percent(result.balance),
        rule=f"{GIVE_RULE_OF_THUMB:.0%}",
        elsewhere=result.elsewhere.total,
        connections=connections,
        sections=sections,
        svg=Markup(svg),  # matplotlib's own markup, names escaped by it,
    )


def _percent(balance: Balance) -> str:
    share = balance.give_share
    return "" if share is None else f"{share:.0%}"


def write_atomically(path: Path, data: bytes) -> None:
    """Write the whole file or nothing: a half-written report must never replace a good one."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_bytes(data)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def audit_text(result: Audit) -> str:
    """The SWOT as the terminal shows it: four sections, each line with its reason and dates."""
    lines = [f"Audit of your focus connections as of {result.today.isoformat()}", ""]
    for section in Section:
        found = result.section(section)
        lines.append(f"{section.value.capitalize()}:")
        lines += [f"  - {f.text}" for f in found] or ["  (none)"]
        lines.append("")
    lines.append(f"Balance, {balance_phrase(result.balance)}")
    for facts in result.facts:
        lines.append(f"  - {facts.name}: {facts.balance.phrase()}")
    if result.elsewhere.total:
        lines.append(f"  - people no longer in the plan: {result.elsewhere.phrase()}")
    return "\n".join(lines)


def _balance_json(balance: Balance) -> dict[str, object]:
    return {"give": balance.give, "ask": balance.ask, "give_share": balance.give_share}


def audit_json(result: Audit) -> dict[str, object]:
    return {
        "today": result.today.isoformat(),
        **{
            section.value: [
                {
                    "rule": f.rule.value,
                    "connection": f.connection,
                    "text": f.text,
                    "dates": [d.isoformat() for d in f.dates],
                }
                for f in result.section(section)
            ]
            for section in Section
        },
        "balance": {
            "rule_of_thumb_give_share": GIVE_RULE_OF_THUMB,
            "overall": _balance_json(result.balance),
            "elsewhere": _balance_json(result.elsewhere),
            "connections": [
                {
                    "name": facts.name,
                    **_balance_json(facts.balance),
                    "last_met": facts.last_met.isoformat() if facts.last_met else None,
                    "due": facts.due.isoformat() if facts.due else None,
                    "overdue": facts.overdue(result.today),
                }
                for facts in result.facts
            ],
        },
    }
