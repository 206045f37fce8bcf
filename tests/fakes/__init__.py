"""Faithful fakes of the vendors' redirect-service APIs, served over real HTTP on 127.0.0.1.

Each fake is a `FakeServer` (fakes/server.py): start it (`with FakeX(...) as fake:`), point a
client's `base_url` at `fake.url`, seed MACs held by another account, inject faults
(`fail_next`, `throttle_next`, `slow_next`) and inspect the store and the request log.
"""

from .poly import FakePolyZtp
from .server import FakeServer, Reply, Request
from .sraps import FakeSraps
from .yealink import FakeYealinkRps
from .ymcs import FakeYmcs

__all__ = ["FakePolyZtp", "FakeServer", "FakeSraps", "FakeYealinkRps", "FakeYmcs", "Reply",
           "Request"]
