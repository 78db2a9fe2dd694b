"""The focus plan parser: one test per rule, a corpus of broken plans, and robustness properties."""

from __future__ import annotations

import json
from datetime import time, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedules.cadence import Cadence
from schedules.model import ConnectionKind, Owner, Stage
from schedules.plan import CONNECTION_KEYS, REQUIRED_TOP_KEYS, TOP_KEYS, PlanInvalid, PlanIssue, parse_plan

FIXTURES = Path(__file__).parent / "fixtures" / "plans"
BROKEN = FIXTURES / "broken"
TEMPLATE = Path(__file__).parent.parent / "daemon" / "templates" / "plan.yaml"

# Line numbers matter: the tests below edit single lines of this plan and assert where the error lands.
BASE = """\
owner: {name: Ada Lovelace, email: ada@example.com}
timezone: Europe/London
mindset: Relationships first.
working_hours: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:30"}
review: {every: month, duration: 30m, kickoff: true}
connections:
  - name: Grace Hopper
    email: grace@example.com
    stage: nurture
    every: 2 weeks
    next_action: Send the article
  - name: Women in Tech London
    kind: group
    target: true
    stage: find
    every: month
    duration: 1h
    next_action: Attend the next meetup
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, f"{old!r} must occur once"
    return text.replace(old, new)


def issues_of(text: str) -> list[PlanIssue]:
    with pytest.raises(PlanInvalid) as info:
        parse_plan(text, "plan.yaml")
    return info.value.issues


def only_issue(text: str) -> PlanIssue:
    issues = issues_of(text)
    assert len(issues) == 1, "\n".join(map(str, issues))
    return issues[0]


def connection_entry(name: str, *, target: bool = False) -> str:
    flag = str(target).lower()
    return f"  - {{name: {name}, stage: nurture, every: month, next_action: Call, target: {flag}}}\n"


# -- the valid plans -------------------------------------------------------------------------------


def test_base_plan_parses() -> None:
    plan = parse_plan(BASE, "plan.yaml")
    assert [c.name for c in plan.connections] == ["Grace Hopper", "Women in Tech London"]


def test_ada_example_from_the_issue_parses_exactly() -> None:
    plan = parse_plan((FIXTURES / "ada.yaml").read_text(encoding="utf-8"), "ada.yaml")

    assert plan.owner == Owner("Ada Lovelace", "ada@example.com")
    assert plan.timezone == "Europe/London"
    assert plan.mindset == "Relationships are the currency of leadership; I build them before I need them."
    assert plan.working_hours.days == frozenset({0, 1, 2, 3, 4})
    assert (plan.working_hours.start, plan.working_hours.end) == (time(9, 0), time(17, 30))
    assert plan.review.every == Cadence(1, "month")
    assert plan.review.duration == timedelta(minutes=30)
    assert plan.review.kickoff is True
    grace, wit = plan.connections
    assert grace.name == "Grace Hopper"
    assert grace.kind is ConnectionKind.PERSON
    assert grace.email == "grace@example.com"
    assert grace.stage is Stage.NURTURE
    assert grace.every == Cadence(2, "week")
    assert grace.duration == timedelta(minutes=30)
    assert grace.next_action == "Send her the compiler article she asked about"
    assert grace.target is False
    assert wit.name == "Women in Tech London"
    assert wit.kind is ConnectionKind.GROUP
    assert wit.target is True
    assert wit.stage is Stage.FIND
    assert wit.every == Cadence(1, "month")
    assert wit.duration == timedelta(hours=1)
    assert wit.next_action == "Attend the next meetup and meet two organisers"
    assert wit.email is None


def test_ada_fixture_is_the_issue_text_with_its_comments() -> None:
    text = (FIXTURES / "ada.yaml").read_text(encoding="utf-8")
    assert text.startswith("owner: {name: Ada Lovelace, email: ada@example.com}\n")
    assert "   # every: month | quarter\n" in text
    assert "# a new connection to create; at least one entry must be a target\n" in text


def test_starter_template_parses_and_teaches_the_method() -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    plan = parse_plan(text, "plan.yaml")
    assert any(c.target for c in plan.connections)
    for lesson in ("mindset", "up to five", "target", "find", "nurture", "elevate", "month", "quarter"):
        assert lesson in text


def test_defaults_for_optional_fields() -> None:
    text = edit("review: {every: month, duration: 30m, kickoff: true}", "review: {every: quarter}")
    plan = parse_plan(text, "plan.yaml")
    grace = plan.connections[0]
    assert plan.review.every == Cadence(3, "month")
    assert plan.review.duration == timedelta(minutes=30)
    assert plan.review.kickoff is True
    assert grace.kind is ConnectionKind.PERSON
    assert grace.target is False
    assert grace.duration == timedelta(minutes=30)
    assert (grace.emails, grace.keywords, grace.notes) == ((), (), "")


def test_optional_fields_are_read_and_normalised() -> None:
    text = edit(
        "    email: grace@example.com\n",
        "    email: Grace@Example.COM\n"
        "    emails: [grace@home.example, GRACE@example.com]\n"
        "    keywords: [Compilers, COBOL, compilers]\n"
        "    notes: |\n      Cares about teaching.\n      Asked about the article.\n",
    )
    grace = parse_plan(text, "plan.yaml").connections[0]
    assert grace.email == "grace@example.com"
    assert grace.emails == ("grace@home.example",)
    assert grace.all_emails == ("grace@example.com", "grace@home.example")
    assert grace.keywords == ("compilers", "cobol")
    assert grace.notes == "Cares about teaching.\nAsked about the article."


def test_optional_key_without_value_is_absent() -> None:
    grace = parse_plan(
        edit("    email: grace@example.com\n", "    email:\n    notes:\n"), "plan.yaml"
    ).connections[0]
    assert grace.email is None
    assert grace.notes == ""


def test_unquoted_times_are_times_in_yaml_1_2_and_in_yaml_1_1() -> None:
    unquoted = edit('start: "09:00", end: "17:30"', "start: 9:00, end: 17:30")
    for text in (unquoted, "%YAML 1.1\n---\n" + unquoted):
        hours = parse_plan(text, "plan.yaml").working_hours
        assert (hours.start, hours.end) == (time(9, 0), time(17, 30))


def test_review_accepts_month_and_quarter_spelt_as_months() -> None:
    for every, expected in (("1 month", Cadence(1, "month")), ("3 months", Cadence(3, "month"))):
        plan = parse_plan(edit("every: month, duration", f"every: {every}, duration"), "plan.yaml")
        assert plan.review.every == expected


def test_stage_and_kind_ignore_case_and_any_stage_may_be_a_target() -> None:
    text = edit("    stage: find\n", "    stage: Elevate\n", edit("kind: group", "kind: GROUP"))
    wit = parse_plan(text, "plan.yaml").connections[1]
    assert (wit.kind, wit.stage, wit.target) == (ConnectionKind.GROUP, Stage.ELEVATE, True)


def test_five_connections_are_allowed() -> None:
    text = BASE + "".join(connection_entry(f"Person {n}") for n in range(3))
    assert len(parse_plan(text, "plan.yaml").connections) == 5


# -- one test per rule -----------------------------------------------------------------------------


def test_rule_at_least_one_connection() -> None:
    text = BASE.split("connections:")[0] + "connections: []\n"
    issue = only_issue(text)
    assert (issue.line, issue.column, issue.field) == (6, 1, "connections")
    assert issue.message == "must list one to five connections; found none"


def test_rule_at_most_five_connections() -> None:
    text = BASE + "".join(connection_entry(f"Person {n}") for n in range(4))
    issue = only_issue(text)
    # Reported at the sixth entry (line 22, after "  - "), against the list as a whole.
    assert (issue.line, issue.column, issue.field) == (22, 5, "connections")
    assert issue.message == "at most five connections: the method focuses on up to five (found 6)"


def test_rule_at_least_one_target() -> None:
    issue = only_issue(edit("    target: true\n", "    target: false\n"))
    assert (issue.line, issue.column, issue.field) == (6, 1, "connections")
    assert "at least one connection must be a target (target: true)" in issue.message


def test_rule_stage_is_find_nurture_or_elevate() -> None:
    issue = only_issue(edit("    stage: find\n", "    stage: befriend\n"))
    assert str(issue) == "plan.yaml:15:12: connections[1].stage: must be one of find, nurture, elevate"


def test_rule_kind_is_person_or_group() -> None:
    issue = only_issue(edit("kind: group", "kind: club"))
    assert str(issue) == "plan.yaml:13:11: connections[1].kind: must be one of person, group"


@pytest.mark.parametrize(
    ("zone", "column", "hint"),
    [
        ("Mars/Olympus_Mons", 11, ""),
        ("europe/london", 11, " (did you mean 'Europe/London'?)"),
        ("Europe/Lodnon", 11, " (did you mean 'Europe/London'?)"),
        ("Europe", 11, ""),  # a directory of zones, not a zone
        ("localtime", 11, ""),  # the machine's zone: not portable, not a place
        ("Factory", 11, ""),
        ("../etc/passwd", 11, ""),
        ('"Europe London"', 11, " (did you mean 'Europe/London'?)"),
    ],
)
def test_rule_timezone_is_an_iana_zone(zone: str, column: int, hint: str) -> None:
    issue = only_issue(edit("timezone: Europe/London", f"timezone: {zone}"))
    assert (issue.line, issue.column, issue.field) == (2, column, "timezone")
    assert issue.message.startswith("'")
    assert issue.message.endswith(f"is not an IANA time zone such as 'Europe/London'{hint}")


def test_rule_timezone_is_not_empty() -> None:
    issue = only_issue(edit("timezone: Europe/London", 'timezone: ""'))
    assert str(issue) == "plan.yaml:2:11: timezone: must not be empty"


@pytest.mark.parametrize(
    "zone", ["UTC", "America/Argentina/Buenos_Aires", "Asia/Kolkata", "Europe/Amsterdam", "America/Phoenix"]
)
def test_timezone_accepts_real_zones(zone: str) -> None:
    assert parse_plan(edit("timezone: Europe/London", f"timezone: {zone}"), "plan.yaml").timezone == zone


@pytest.mark.parametrize(("start", "end"), [('"17:30"', '"09:00"'), ('"09:00"', '"09:00"')])
def test_rule_working_hours_start_before_end(start: str, end: str) -> None:
    issue = only_issue(edit('start: "09:00", end: "17:30"', f"start: {start}, end: {end}"))
    assert (issue.line, issue.column, issue.field) == (4, 71 + len(start) - 7, "working_hours.end")
    assert issue.message.startswith("must be later than start (")


def test_rule_unknown_key_suggests_the_closest_known_key() -> None:
    issue = only_issue(edit("    every: 2 weeks\n", "    cadance: 2 weeks\n"))
    # No separate "every is required": the typo's own message already names it.
    assert (
        str(issue) == "plan.yaml:10:5: connections[0].cadance: unknown key 'cadance' (did you mean 'every'?)"
    )


def test_rule_unknown_key_without_a_close_match_lists_the_known_keys() -> None:
    issue = only_issue(edit("owner: {", "colour: green\nowner: {"))
    assert (issue.line, issue.column, issue.field) == (1, 1, "colour")
    assert issue.message == f"unknown key 'colour' (known keys: {', '.join(TOP_KEYS)})"


def test_rule_unknown_key_in_a_connection_lists_connection_keys() -> None:
    issue = only_issue(edit("    every: month\n", "    every: month\n    favourite: tea\n"))
    assert issue.field == "connections[1].favourite"
    assert issue.message == f"unknown key 'favourite' (known keys: {', '.join(CONNECTION_KEYS)})"


def test_rule_number_where_text_is_expected() -> None:
    issue = only_issue(edit("  - name: Grace Hopper\n", "  - name: 42\n"))
    assert str(issue) == (
        "plan.yaml:7:11: connections[0].name: expected text, got the number 42 (quote it to use it as text)"
    )


def test_rule_yaml_boolean_word_where_text_is_expected() -> None:
    issue = only_issue(edit("name: Ada Lovelace", "name: yes"))
    assert (issue.line, issue.column, issue.field) == (1, 15, "owner.name")
    assert issue.message == "'yes' reads as a boolean in YAML 1.1; quote it if you mean the text"
    assert parse_plan(edit("name: Ada Lovelace", 'name: "yes"'), "plan.yaml").owner.name == "yes"


def test_rule_yaml_1_1_boolean_where_text_is_expected() -> None:
    issue = only_issue("%YAML 1.1\n---\n" + edit("name: Ada Lovelace", "name: No"))
    assert (issue.line, issue.column, issue.field) == (3, 15, "owner.name")
    assert issue.message == "expected text, got the boolean No (quote it to use it as text)"


def test_rule_boolean_fields_take_true_or_false() -> None:
    issue = only_issue(edit("    target: true\n", "    target: yes\n"))
    assert str(issue) == "plan.yaml:14:13: connections[1].target: expected true or false, got 'yes'"


def test_rule_mapping_expected() -> None:
    issue = only_issue(edit("owner: {name: Ada Lovelace, email: ada@example.com}", "owner: Ada Lovelace"))
    assert (issue.line, issue.column, issue.field) == (1, 8, "owner")
    assert issue.message == "expected a mapping with the keys name, email; got 'Ada Lovelace'"


def test_rule_list_expected() -> None:
    issue = only_issue(edit("days: [mon, tue, wed, thu, fri]", "days: weekdays"))
    assert (issue.line, issue.column, issue.field) == (4, 23, "working_hours.days")
    assert issue.message.startswith("expected a list such as [mon, tue, wed, thu, fri]")


def test_rule_required_key_missing() -> None:
    issue = only_issue(edit("    next_action: Send the article\n", ""))
    # Pointed at the start of the entry that lacks it.
    assert str(issue) == "plan.yaml:7:5: connections[0].next_action: is required"


def test_rule_top_level_key_missing() -> None:
    issue = only_issue(edit("mindset: Relationships first.\n", ""))
    assert str(issue) == "plan.yaml:1:1: mindset: is required"


def test_rule_mindset_is_not_empty() -> None:
    issue = only_issue(edit("mindset: Relationships first.", "mindset:"))
    # An empty value is reported at its key, not where the next line starts.
    assert str(issue) == "plan.yaml:3:1: mindset: must not be empty"


def test_rule_next_action_is_not_blank() -> None:
    issue = only_issue(edit("next_action: Send the article", 'next_action: "  "'))
    assert str(issue) == "plan.yaml:11:18: connections[0].next_action: must not be empty"


def test_rule_names_are_unique_ignoring_case() -> None:
    issue = only_issue(edit("  - name: Women in Tech London\n", "  - name: GRACE hopper\n"))
    assert (issue.line, issue.column, issue.field) == (12, 11, "connections[1].name")
    assert issue.message == "'GRACE hopper' is already connections[0]; names must be unique"


def test_rule_email_is_an_address() -> None:
    issue = only_issue(edit("email: grace@example.com", "email: grace at example.com"))
    assert (
        str(issue) == "plan.yaml:8:12: connections[0].email: 'grace at example.com' is not an email address"
    )


def test_rule_further_emails_are_addresses() -> None:
    issue = only_issue(edit("    kind: group\n", "    kind: group\n    emails: [wit@example.org, nope]\n"))
    assert str(issue) == "plan.yaml:14:31: connections[1].emails[1]: 'nope' is not an email address"


def test_rule_an_address_identifies_one_connection() -> None:
    issue = only_issue(edit("    kind: group\n", "    kind: group\n    email: GRACE@example.com\n"))
    assert (issue.line, issue.column, issue.field) == (14, 12, "connections[1].email")
    assert issue.message == "'grace@example.com' already identifies connections[0]"


def test_rule_the_owner_address_identifies_no_connection() -> None:
    issue = only_issue(edit("email: grace@example.com", "email: ada@example.com"))
    assert issue.field == "connections[0].email"
    assert issue.message == "'ada@example.com' is the owner's own address: it would match every meeting"


def test_rule_working_days_are_weekday_names() -> None:
    issue = only_issue(edit("[mon, tue, wed, thu, fri]", "[mon, tues, wed]"))
    assert str(issue) == (
        "plan.yaml:4:29: working_hours.days[1]: "
        "must be one of mon, tue, wed, thu, fri, sat, sun (did you mean 'tue'?)"
    )


def test_rule_working_days_are_not_repeated() -> None:
    issue = only_issue(edit("[mon, tue, wed, thu, fri]", "[mon, tue, Mon]"))
    assert str(issue) == "plan.yaml:4:34: working_hours.days[2]: 'mon' is listed twice"


def test_rule_working_days_are_not_empty() -> None:
    issue = only_issue(edit("[mon, tue, wed, thu, fri]", "[]"))
    assert (issue.line, issue.column, issue.field) == (4, 23, "working_hours.days")
    assert issue.message.startswith("must list at least one working day")


@pytest.mark.parametrize("value", ['"9am"', '"24:00"', '"09:60"', "9", '"09:00:00"'])
def test_rule_times_are_hh_mm(value: str) -> None:
    issue = only_issue(edit('start: "09:00"', f"start: {value}"))
    assert (issue.line, issue.column, issue.field) == (4, 57, "working_hours.start")
    assert issue.message.startswith('expected a time of day such as "09:00" (24-hour HH:MM), got ')


def test_rule_review_is_monthly_or_quarterly() -> None:
    issue = only_issue(edit("every: month, duration", "every: 2 weeks, duration"))
    assert (issue.line, issue.column, issue.field) == (5, 17, "review.every")
    assert issue.message.startswith("must be month or quarter")


def test_rule_cadence_is_readable() -> None:
    issue = only_issue(edit("every: 2 weeks", "every: fortnightly"))
    assert (issue.line, issue.column, issue.field) == (10, 12, "connections[0].every")
    assert issue.message.startswith("cannot read cadence 'fortnightly'")


def test_rule_duration_is_readable() -> None:
    issue = only_issue(edit("duration: 1h", "duration: 60"))
    assert str(issue) == (
        "plan.yaml:17:15: connections[1].duration: "
        "expected a duration such as '30m', '1h' or '1h30m', got the number 60"
    )


def test_rule_duplicate_key() -> None:
    issue = only_issue(edit("    stage: nurture\n", "    stage: nurture\n    stage: elevate\n"))
    assert str(issue) == "plan.yaml:10:5: connections[0].stage: duplicate key 'stage' (first given at 9:5)"


def test_rule_yaml_syntax_error_has_the_position_of_the_problem() -> None:
    issue = only_issue(edit("    stage: nurture\n", "    stage: [nurture\n"))
    assert issue.field == ""
    assert issue.line == 10
    assert issue.message.startswith("invalid YAML: ")


def test_rule_tab_indentation_is_a_yaml_error() -> None:
    issue = only_issue(edit("    stage: nurture\n", "\tstage: nurture\n"))
    assert (issue.line, issue.column, issue.field) == (9, 1, "")
    assert issue.message == (
        "invalid YAML: found character '\\t' that cannot start any token (while scanning for the next token)"
    )


def test_rule_control_character_is_located() -> None:
    issue = only_issue(edit("Relationships first.", "Relationships\x07first."))
    assert (issue.line, issue.column) == (3, 23)
    assert issue.message.startswith("invalid YAML: character #x0007 is not allowed")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n...\n"])
def test_rule_empty_file(text: str) -> None:
    issue = only_issue(text)
    assert str(issue) == f"plan.yaml:1:1: the plan is empty: it needs {', '.join(REQUIRED_TOP_KEYS)}"


@pytest.mark.parametrize(("text", "described"), [("- a\n- b\n", "a list"), ("just words\n", "'just words'")])
def test_rule_top_level_must_be_a_mapping(text: str, described: str) -> None:
    issue = only_issue(text)
    assert (issue.line, issue.column, issue.field) == (1, 1, "")
    assert issue.message.endswith(f"; got {described}")


def test_rule_tags_and_merge_keys_are_refused() -> None:
    text = edit("timezone: Europe/London", "timezone: !!python/name:os.system Europe/London")
    text = edit("working_hours: {", "working_hours: {<<: {}, ", text)
    messages = [(i.field, i.message) for i in issues_of(text)]
    assert messages == [
        ("timezone", "expected text, got a value tagged tag:yaml.org,2002:python/name:os.system"),
        ("working_hours", "merge keys (<<) are not supported: write the keys out"),
    ]


@pytest.mark.parametrize("depth", [150, 600, 100_000])
def test_deep_nesting_is_an_issue_not_a_crash_nor_a_hang(depth: int) -> None:
    issue = only_issue("owner: " + "[" * depth)
    assert issue.message.startswith("invalid YAML")
    if depth > 200:
        assert str(issue) == "plan.yaml:1:208: invalid YAML: nested more than 200 levels deep"


def test_unknown_yaml_version_is_an_issue_not_a_crash() -> None:
    issue = only_issue("%YAML 1.3\n---\n" + BASE)
    assert issue.message.startswith("invalid YAML")


# -- reporting -------------------------------------------------------------------------------------


def test_issue_and_error_strings() -> None:
    first = PlanIssue("plan.yaml", 14, 5, "connections[1].stage", "must be one of find, nurture, elevate")
    second = PlanIssue("plan.yaml", 1, 1, "", "the plan is empty")
    assert str(first) == "plan.yaml:14:5: connections[1].stage: must be one of find, nurture, elevate"
    assert str(second) == "plan.yaml:1:1: the plan is empty"
    assert str(PlanInvalid([first, second])) == f"{first}\n{second}"
    with pytest.raises(AttributeError):
        first.line = 2  # type: ignore[misc]


def test_all_errors_are_reported_at_once_in_file_order() -> None:
    text = edit("timezone: Europe/London", "timezone: Mars/Base")
    text = edit('end: "17:30"', 'end: "08:00"', text)
    text = edit("    stage: find\n", "    stage: befriend\n", text)
    text = edit("    every: 2 weeks\n", "    cadance: 2 weeks\n", text)
    text = edit("    target: true\n", "", text)
    issues = issues_of(text)
    assert [(i.line, i.field) for i in issues] == [
        (2, "timezone"),
        (4, "working_hours.end"),
        (6, "connections"),
        (10, "connections[0].cadance"),
        (14, "connections[1].stage"),
    ]
    assert all(i.filename == "plan.yaml" for i in issues)


def test_the_filename_given_is_the_one_reported() -> None:
    with pytest.raises(PlanInvalid) as info:
        parse_plan("", "/home/ada/.config/circleback/plan.yaml")
    assert str(info.value).startswith("/home/ada/.config/circleback/plan.yaml:1:1: ")


# -- the corpus of broken plans --------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(BROKEN.glob("*.yaml")), ids=lambda p: p.stem)
def test_broken_plan_corpus(path: Path) -> None:
    expected = path.with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    with pytest.raises(PlanInvalid) as info:
        parse_plan(path.read_text(encoding="utf-8"), path.name)
    assert [str(issue) for issue in info.value.issues] == expected


def test_every_broken_plan_has_its_expectations() -> None:
    plans = {p.stem for p in BROKEN.glob("*.yaml")}
    expectations = {p.stem for p in BROKEN.glob("*.expected")}
    assert plans == expectations
    assert len(plans) >= 10


def test_removing_any_line_of_the_example_never_crashes() -> None:
    lines = (FIXTURES / "ada.yaml").read_text(encoding="utf-8").splitlines(keepends=True)
    for index in range(len(lines)):
        text = "".join(lines[:index] + lines[index + 1 :])
        try:
            parse_plan(text, "plan.yaml")
        except PlanInvalid as err:
            assert err.issues
            assert all(1 <= i.line <= len(lines) + 1 and i.column >= 1 for i in err.issues)


# -- properties ------------------------------------------------------------------------------------


def _check_never_crashes(text: str) -> None:
    try:
        parse_plan(text, "plan.yaml")
    except PlanInvalid as err:
        assert err.issues
        assert all(i.line >= 1 and i.column >= 1 for i in err.issues)
        assert all(isinstance(i.message, str) and i.message for i in err.issues)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_only_ever_raises_plan_invalid(text: str) -> None:
    _check_never_crashes(text)


_YAMLISH = st.text(alphabet=st.sampled_from(list("abc09:- []{},\"'#&*!|>%@\n\t .?yes")), max_size=200)


@settings(max_examples=200, deadline=None)
@given(_YAMLISH)
def test_yaml_punctuation_only_ever_raises_plan_invalid(text: str) -> None:
    _check_never_crashes(text)


_KEYS = st.sampled_from([*TOP_KEYS, *CONNECTION_KEYS, "days", "start", "end", "kickoff", "cadance", "<<"])
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 100),
    st.sampled_from(
        ["", "month", "quarter", "2 weeks", "30m", "09:00", "find", "group", "a@b.co", "UTC", "mon"]
    ),
    st.text(max_size=12),
)
_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_KEYS, _DOCUMENTS, max_size=6))
def test_structured_documents_only_ever_raise_plan_invalid(document: dict[str, object]) -> None:
    # JSON is YAML 1.2, so this reaches deep into the schema with well-formed but wrong shapes.
    _check_never_crashes(json.dumps(document, indent=2))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, BASE.count("\n") - 1), st.text(max_size=20))
def test_a_damaged_line_only_ever_raises_plan_invalid(line: int, junk: str) -> None:
    lines = BASE.splitlines(keepends=True)
    lines[line] = lines[line][: len(lines[line]) // 2] + junk + "\n"
    _check_never_crashes("".join(lines))


def test_control_characters_in_text_are_refused() -> None:
    issue = only_issue(edit("name: Grace Hopper", 'name: "Grace\\x01Hopper"'))
    assert issue.field == "connections[0].name"
    assert issue.message == "contains a control character; remove it"


def test_names_starting_with_at_are_reserved_for_the_log() -> None:
    issue = only_issue(edit("name: Grace Hopper", 'name: "@review"'))
    assert (issue.field, issue.message) == ("connections[0].name", "must not start with '@'")


# -- zones that do not follow a place's summer time ------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "suggestion"),
    [
        ("EST", "America/New_York"),
        ("EST5EDT", "America/New_York"),
        ("MST", "America/Denver"),
        ("HST", "Pacific/Honolulu"),
        ("US/Eastern", "America/New_York"),
        ("US/Pacific", "America/Los_Angeles"),
        ("Etc/GMT+5", None),
        ("GB", "Europe/London"),
        ("Asia/Calcutta", "Asia/Kolkata"),
    ],
)
def test_rule_timezone_is_a_location_not_a_fixed_offset_or_legacy_name(
    zone: str, suggestion: str | None
) -> None:
    issue = only_issue(edit("timezone: Europe/London", f"timezone: {zone}"))
    assert (issue.line, issue.column, issue.field) == (2, 11, "timezone")
    assert issue.message.startswith(f"'{zone}' is a fixed-offset or legacy zone name")
    if suggestion is not None:
        assert issue.message.endswith(f"use the location zone '{suggestion}'")
    else:
        assert issue.message.endswith("use a location zone such as 'America/New_York'")


def test_a_legacy_zone_would_have_shifted_touchpoints_in_summer() -> None:
    # Why the rule exists: EST never moves to summer time, so 09:00 EST is 10:00 in New York in July.
    from datetime import datetime
    from zoneinfo import ZoneInfo

    july = datetime(2026, 7, 1, 9, tzinfo=ZoneInfo("EST"))
    assert july.astimezone(ZoneInfo("America/New_York")).hour == 10


# -- upper bounds: a number too large for the calendar is bad input, never a crash -------------------


@pytest.mark.parametrize(
    "every", ["999999999 weeks", "53 weeks", "13 months", "5 quarters", "99999999999999999999 years"]
)
def test_rule_cadence_is_at_most_a_year(every: str) -> None:
    issue = only_issue(edit("every: 2 weeks", f"every: {every}"))
    assert (issue.line, issue.column, issue.field) == (10, 12, "connections[0].every")
    assert issue.message == f"cadence '{every}' is too long: at most a year (52 weeks or 12 months)"


@pytest.mark.parametrize("every", ["52 weeks", "12 months", "4 quarters", "year"])
def test_a_yearly_cadence_is_accepted(every: str) -> None:
    plan = parse_plan(edit("every: 2 weeks", f"every: {every}"), "plan.yaml")
    assert plan.connections[0].every.approx_days() <= 366


@pytest.mark.parametrize(
    "duration", ["99999999999h", "9h", "481m", "99999999999999999999m", "1h99999999999m"]
)
def test_rule_duration_too_long_is_an_issue_not_a_crash(duration: str) -> None:
    issue = only_issue(edit("duration: 1h", f"duration: {duration}"))
    assert (issue.line, issue.field) == (17, "connections[1].duration")
    assert issue.message == f"duration '{duration}' is longer than a working day (8h at most)"


# -- keywords ----------------------------------------------------------------------------------------


def _with_keywords(words: list[str]) -> str:
    return edit("    kind: group\n", "    kind: group\n    keywords: [" + ", ".join(words) + "]\n")


def test_keywords_are_deduplicated_case_insensitively_in_order() -> None:
    plan = parse_plan(_with_keywords(["Meetup", "WIT", "meetup", "wit", "London"]), "plan.yaml")
    assert plan.connections[1].keywords == ("meetup", "wit", "london")


def test_rule_at_most_max_keywords_per_connection() -> None:
    from schedules.plan import MAX_KEYWORDS

    words = [f"w{n}" for n in range(MAX_KEYWORDS + 1)]
    issue = only_issue(_with_keywords(words))
    assert (issue.line, issue.field) == (14, "connections[1].keywords")
    assert issue.message == (
        f"at most {MAX_KEYWORDS} keywords per connection (found {MAX_KEYWORDS + 1}): "
        "keep the words that name this connection's meetings"
    )
    assert len(parse_plan(_with_keywords(words[:-1]), "plan.yaml").connections[1].keywords) == MAX_KEYWORDS


def test_numbers_with_thousands_of_digits_are_issues_not_crashes() -> None:
    # int() refuses strings of more than 4300 digits with a ValueError that is not a CadenceError.
    digits = "9" * 5000
    text = edit("duration: 1h", f"duration: {digits}h", edit("every: 2 weeks", f"every: {digits} weeks"))
    every, duration = issues_of(text)
    assert every.field == "connections[0].every" and "is too long: at most a year" in every.message
    assert duration.field == "connections[1].duration"
    assert duration.message.endswith("is longer than a working day (8h at most)")


# --- placement settings (issue 8) -------------------------------------------------------------------


def with_placement(section: str, text: str = BASE) -> str:
    return text + section


def test_placement_defaults_without_the_section() -> None:
    plan = parse_plan(BASE, "plan.yaml")
    assert [str(w) for w in plan.placement.prefer] == ["10:00-12:00", "14:00-16:30"]
    assert plan.placement.buffer == timedelta(minutes=15)
    assert plan.placement.max_per_day == 1
    # Europe/London is in GB: its bank holidays get nothing unless the plan says otherwise.
    assert plan.placement.holidays == "GB"
    assert all(c.prefer is None for c in plan.connections)


def test_placement_section_is_read() -> None:
    text = with_placement(
        'placement:\n  prefer: ["09:30-11:00", "15:00-17:00"]\n  buffer: 10m\n  max_per_day: 2\n'
        "  holidays: gb-sct\n"
    )
    placement = parse_plan(text, "plan.yaml").placement
    assert [str(w) for w in placement.prefer] == ["09:30-11:00", "15:00-17:00"]
    assert placement.buffer == timedelta(minutes=10)
    assert placement.max_per_day == 2
    assert placement.holidays == "GB-SCT"


@pytest.mark.parametrize(("written", "expected"), [("none", None), ("false", None), ("US-CA", "US-CA")])
def test_placement_holidays_can_be_turned_off_or_chosen(written: str, expected: str | None) -> None:
    plan = parse_plan(with_placement(f"placement:\n  holidays: {written}\n"), "plan.yaml")
    assert plan.placement.holidays == expected


def test_placement_buffer_zero_means_none() -> None:
    plan = parse_plan(with_placement("placement:\n  buffer: 0m\n"), "plan.yaml")
    assert plan.placement.buffer == timedelta(0)


def test_no_default_holidays_for_a_zone_without_a_country() -> None:
    plan = parse_plan(edit("timezone: Europe/London", "timezone: UTC"), "plan.yaml")
    assert plan.placement.holidays is None


def test_connection_prefer_overrides_the_plan() -> None:
    text = edit(
        "    next_action: Send the article\n",
        '    next_action: Send the article\n    prefer: ["16:00-17:30"]\n',
    )
    plan = parse_plan(text, "plan.yaml")
    assert [str(w) for w in plan.connections[0].prefer or ()] == ["16:00-17:30"]
    assert plan.connections[1].prefer is None


@pytest.mark.parametrize(
    ("section", "where", "field", "message"),
    [
        ('  prefer: ["10:00-12:00", "8:00-10:00"]\n', (7, 27), "placement.prefer[1]",
         "08:00-10:00 is not inside working hours (09:00-17:30)"),
        ('  prefer: ["12:00-10:00"]\n', (7, 12), "placement.prefer[0]",
         "the window must end after it starts (12:00)"),
        ('  prefer: ["10-12"]\n', (7, 12), "placement.prefer[0]",
         "expected a window of the day such as \"10:00-12:00\", got '10-12'"),
        ('  prefer: ["10:00-25:00"]\n', (7, 12), "placement.prefer[0]",
         "expected a window of the day such as \"10:00-12:00\", got '10:00-25:00'"),
        ("  prefer: []\n", (7, 11), "placement.prefer",
         'must list at least one window such as "10:00-12:00" (or leave the key out)'),
        ("  prefer: 10:00-12:00\n", (7, 11), "placement.prefer",
         "expected a list such as [\"10:00-12:00\", \"14:00-16:30\"], got '10:00-12:00'"),
        ("  buffer: 15\n", (7, 11), "placement.buffer",
         "expected a duration such as '30m', '1h' or '1h30m', got the number 15"),
        ("  buffer: 3h\n", (7, 11), "placement.buffer",
         "must be 2h at most: a longer buffer would leave no room in a busy day"),
        ("  max_per_day: 0\n", (7, 16), "placement.max_per_day",
         "expected a whole number from 1 to 24, got the number 0"),
        ("  max_per_day: two\n", (7, 16), "placement.max_per_day",
         "expected a whole number from 1 to 24, got 'two'"),
        ("  holidays: XX\n", (7, 13), "placement.holidays",
         "'XX' is not an ISO 3166 country with known public holidays"),
        ("  holidays: GB-XYZ\n", (7, 13), "placement.holidays",
         "'XYZ' is not a subdivision of GB (one of ENG, NIR, SCT, WLS)"),
        ("  holidays: 44\n", (7, 13), "placement.holidays",
         "expected a country code such as GB or GB-SCT (or none), got the number 44"),
        ("  bufer: 10m\n", (7, 3), "placement.bufer", "unknown key 'bufer' (did you mean 'buffer'?)"),
    ],
)  # fmt: skip
def test_placement_errors_name_line_column_and_field(
    section: str, where: tuple[int, int], field: str, message: str
) -> None:
    review = "review: {every: month, duration: 30m, kickoff: true}\n"
    text = edit(review, review + "placement:\n" + section + "\n")
    # The section is inserted after the review line: `placement:` is line 6, its key line 7.
    issue = only_issue(text)
    assert (issue.line, issue.column, issue.field, issue.message) == (*where, field, message)


def test_placement_errors_are_reported_with_the_file_name() -> None:
    text = edit(
        "    next_action: Send the article\n",
        '    next_action: Send the article\n    prefer: ["18:00-19:00"]\n',
    )
    with pytest.raises(PlanInvalid) as info:
        parse_plan(text, "plan.yaml")
    assert str(info.value) == (
        "plan.yaml:12:14: connections[0].prefer[0]: 18:00-19:00 is not inside working hours (09:00-17:30)"
    )


def test_starter_template_placement_example_parses_when_uncommented() -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    start = lines.index("# placement:\n")
    for index in range(start, start + 5):
        lines[index] = lines[index].removeprefix("# ")
    placement = parse_plan("".join(lines), "plan.yaml").placement
    assert [str(w) for w in placement.prefer] == ["10:00-12:00", "14:00-16:30"]
    assert (placement.buffer, placement.max_per_day, placement.holidays) == (timedelta(minutes=15), 1, "GB")


def test_the_countries_read_from_the_holidays_registry_are_the_packages_own_list() -> None:
    # The plan checks a country against the registry (no country module imported); it must agree with the
    # package's public listing, subdivisions included, or a valid plan would be refused.
    import holidays

    from schedules.plan import _holiday_countries, _subdivisions

    listed = {
        code: list(subs) for code, subs in holidays.list_supported_countries().items() if len(code) == 2
    }
    assert _holiday_countries() == set(listed)
    for code in ("GB", "UK", "US", "DE", "FR", "IN", "AU", "CA"):
        assert _subdivisions(code) == listed[code], code
