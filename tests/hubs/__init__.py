"""Test doubles of data hubs: real HTTP servers on loopback addresses."""
from tests.hubs.common import LoggedRequest, RequestLog
from tests.hubs.faulty_hub import FaultyHub
from tests.hubs.original_hub import OriginalHub

__all__ = ["FaultyHub", "LoggedRequest", "OriginalHub", "RequestLog"]
