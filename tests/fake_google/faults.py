"""Injectable faults: the next N calls (or a seeded fraction of them) fail, drop or answer slowly."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import fault_error

# Where a rule applies: "api" = a plain Calendar API request, "inner" = one call inside a batch,
# "batch" = the batch request as a whole, "token" = the OAuth token endpoint.
API_CALLS = frozenset({"api", "inner"})
HTTP_REQUESTS = frozenset({"api", "batch", "token"})


@dataclass
class Call:
    """One entry of the request log: an HTTP request, or one call inside a batch."""

    kind: str
    method: str
    path: str
    query: dict[str, list[str]]
    user: str | None = None
    status: int = 0
    batch: int | None = None  # for kind "inner": the index in the log of its batch request
    fault: str | None = None
    body: Any = None


@dataclass
class FaultRule:
    action: str  # "error", "drop" or "slow"
    targets: frozenset[str]
    kinds: tuple[str, ...] = ()
    remaining: int | None = None  # None: unlimited (a fraction rule)
    probability: float = 1.0
    delay: float = 0.0
    match: Callable[[Call], bool] | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(0))


@dataclass(frozen=True)
class Fault:
    action: str
    kind: str = ""
    delay: float = 0.0


class Faults:
    """The rules of one fake server; the first rule that applies to a call decides it."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def fail_next(
        self,
        count: int,
        kind: str = "429",
        *,
        targets: Iterable[str] = API_CALLS,
        match: Callable[[Call], bool] | None = None,
    ) -> None:
        """The next `count` calls answer the error `kind` ("429", "rateLimitExceeded", "500", ...)."""
        fault_error(kind)
        self._add(FaultRule("error", frozenset(targets), (kind,), remaining=count, match=match))

    def fail_fraction(
        self,
        fraction: float,
        kinds: Iterable[str] = ("429", "rateLimitExceeded", "500"),
        *,
        seed: int = 0,
        targets: Iterable[str] = API_CALLS,
        match: Callable[[Call], bool] | None = None,
    ) -> None:
        """Each call fails with probability `fraction`, the error drawn from `kinds`, reproducibly."""
        chosen = tuple(kinds)
        for kind in chosen:
            fault_error(kind)
        rule = FaultRule(
            "error", frozenset(targets), chosen, None, fraction, match=match, rng=random.Random(seed)
        )
        self._add(rule)

    def drop_next(
        self,
        count: int = 1,
        *,
        targets: Iterable[str] = HTTP_REQUESTS,
        match: Callable[[Call], bool] | None = None,
    ) -> None:
        """The next `count` HTTP requests get their connection closed without an answer."""
        self._add(FaultRule("drop", frozenset(targets) - {"inner"}, remaining=count, match=match))

    def slow_next(
        self,
        count: int,
        seconds: float,
        *,
        targets: Iterable[str] = HTTP_REQUESTS,
        match: Callable[[Call], bool] | None = None,
    ) -> None:
        """The next `count` requests are answered only after `seconds`."""
        self._add(FaultRule("slow", frozenset(targets), remaining=count, delay=seconds, match=match))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def _add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def decide(self, call: Call) -> Fault | None:
        with self._lock:
            for rule in self._rules:
                if call.kind not in rule.targets or (rule.remaining is not None and rule.remaining <= 0):
                    continue
                if rule.match is not None and not rule.match(call):
                    continue
                if rule.probability < 1.0 and rule.rng.random() >= rule.probability:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                kind = rule.rng.choice(rule.kinds) if rule.kinds else ""
                return Fault(rule.action, kind, rule.delay)
        return None
