"""Shared fixtures: real servers, real databases, a real AWS emulator (see tests/support)."""

pytest_plugins = ["tests.support.servers", "tests.support.databases", "tests.support.ministack"]
