"""The backups end-to-end stack (server, emulator, bucket, role, location, agent processes) serves these tests too."""

from tests.backups_e2e.test_round_trip import stack_factory  # noqa: F401
