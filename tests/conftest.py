"""Shared fixtures: real servers, real databases, a real AWS emulator (see tests/support)."""

import os

# The emulators listen on 127.0.0.1, so in-process Settings() must allow private endpoints; tests of endpoint
# safety set allow_private_endpoints=False themselves.
os.environ.setdefault("STOWAGE_ALLOW_PRIVATE_ENDPOINTS", "true")

pytest_plugins = [
    "tests.support.servers",
    "tests.support.databases",
    "tests.support.ministack",
    "tests.support.kube",
    "tests.support.stack",
]
