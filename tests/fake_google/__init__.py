"""A stateful fake of Google Calendar API v3 (and Google's OAuth token endpoint) for tests."""

from .errors import ApiError
from .faults import Call, Faults
from .server import FakeGoogle, running

__all__ = ["ApiError", "Call", "FakeGoogle", "Faults", "running"]
