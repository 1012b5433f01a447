"""Fixtures for cluster, agent and vending tests: the ministack plugin's fixtures plus helpers."""

from __future__ import annotations

from tests.support.ministack import aws, ministack  # noqa: F401 - fixtures used by the live tests here
