"""The backups' end-to-end stack (server, emulator, bucket, role, location, agent processes) serves these tests too.

It is moving from ``tests/backups_e2e/test_round_trip.py`` to ``tests/support/stack.py``; either home works.
"""

try:
    from tests.support.stack import BOTO, REGION, Stack, stack_factory  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # before the move
    from tests.backups_e2e.test_round_trip import (  # type: ignore[attr-defined,no-redef,unused-ignore]
        BOTO,
        REGION,
        Stack,
        stack_factory,
    )

__all__ = ["BOTO", "REGION", "Stack", "stack_factory"]
