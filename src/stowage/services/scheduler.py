"""Continuous re-validation of saved locations on procrastinate.

On PostgreSQL the jobs live in the database, so several server processes share them: procrastinate defers
each periodic tick once per timestamp, a queueing lock keeps one pending job per location, and the tick
claims due locations (moving their due time forward) before deferring, so every due validation runs exactly
once. With SQLite the very same tasks run in-process on procrastinate's in-memory connector.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import procrastinate
from procrastinate import exceptions as procrastinate_errors
from procrastinate.testing import InMemoryConnector
from sqlalchemy import text

from stowage.services.backup_sync import BackupSyncService
from stowage.services.backups import BackupService
from stowage.services.locations import LocationService
from stowage.services.restores import RestoreService
from stowage.services.workspaces import WorkspaceService
from stowage.store.database import Database

log = logging.getLogger("stowage.scheduler")
QUEUE = "revalidation"
# A claimed location is not handed out again for this long, even if its job is lost.
CLAIM_LEASE_SECONDS = 600
# Closing the job store while its database is gone only waits out retries: give up soon (a server that does not
# stop on SIGTERM gets SIGKILLed by its supervisor anyway, losing more).
STOP_TIMEOUT_SECONDS = 1.5
# A worker that stopped on its own (lost database connection) is started again after 1, 2, 4 ... 30 s.
WORKER_RESTART_MIN_SECONDS = 1.0
WORKER_RESTART_MAX_SECONDS = 30.0
WORKER_HEALTHY_SECONDS = 60.0


class RevalidationScheduler:
    """Runs due re-validations with bounded concurrency inside the server process."""

    def __init__(
        self,
        *,
        db: Database,
        locations: LocationService,
        backups: BackupService | None = None,
        restores: RestoreService | None = None,
        workspaces: WorkspaceService | None = None,
        backup_sync: BackupSyncService | None = None,
        sync_interval_minutes: float = 10,
        concurrency: int = 4,
        tick_seconds: int = 60,
    ) -> None:
        self._db = db
        self._locations = locations
        self._backups = backups
        self._restores = restores
        self._workspaces = workspaces
        self._backup_sync = backup_sync
        self._sync_interval_seconds = max(0.0, sync_interval_minutes * 60)
        self._concurrency = concurrency
        self._worker: asyncio.Task[None] | None = None
        connector: Any = (
            procrastinate.PsycopgConnector(conninfo=db.libpq_url) if db.is_postgres else InMemoryConnector()
        )
        self.app = procrastinate.App(connector=connector)
        self._register(tick_seconds)

    def _register(self, tick_seconds: int) -> None:
        cron = "* * * * *" if tick_seconds >= 60 else f"*/{max(1, tick_seconds)} * * * * *"
        locations = self._locations

        @self.app.task(name="stowage.revalidate", queue=QUEUE, pass_context=False)
        async def revalidate(location_id: str) -> None:
            # Validation is blocking boto3 work: run it in a thread so the worker keeps its event loop.
            try:
                await asyncio.to_thread(locations.revalidate_by_id, location_id, trigger="schedule")
            except Exception:
                log.warning("scheduled validation of %s failed unexpectedly", location_id, exc_info=True)

        @self.app.periodic(cron=cron, periodic_id="tick")
        @self.app.task(name="stowage.revalidation_tick", queue=QUEUE, pass_context=False)
        async def tick(timestamp: int) -> None:
            due = await asyncio.to_thread(locations.claim_due, lease_seconds=CLAIM_LEASE_SECONDS)
            for location_id in due:
                with contextlib.suppress(procrastinate_errors.AlreadyEnqueued):
                    await revalidate.configure(queueing_lock=f"revalidate:{location_id}").defer_async(
                        location_id=location_id
                    )

        self.revalidate_task = revalidate
        backups, restores, workspaces = self._backups, self._restores, self._workspaces
        if backups is None:
            return

        # Scheduled backups, lost jobs, expiry and deletions; on PostgreSQL deferred once per timestamp for all
        # servers, and every transition inside is a compare and set, so a second run changes nothing.
        @self.app.periodic(cron=cron, periodic_id="backups-tick")
        @self.app.task(name="stowage.backups_tick", queue=QUEUE, pass_context=False)
        async def backups_tick(timestamp: int) -> None:
            try:
                await asyncio.to_thread(backups.tick)
                if restores is not None:
                    await asyncio.to_thread(restores.fail_lost_jobs)
                if workspaces is not None:
                    await asyncio.to_thread(workspaces.create_due_scheduled)
            except Exception:
                log.warning("the backups tick failed unexpectedly", exc_info=True)

        self._register_sync(cron, 60 if tick_seconds >= 60 else max(1, tick_seconds))

    def _register_sync(self, cron: str, tick_period: int) -> None:
        backup_sync, interval = self._backup_sync, self._sync_interval_seconds
        if backup_sync is None or interval <= 0:
            return

        @self.app.task(name="stowage.backup_sync", queue=QUEUE, pass_context=False)
        async def sync_backups() -> None:
            try:
                await asyncio.to_thread(backup_sync.sync_all)
            except Exception:
                log.warning("the backup sync failed unexpectedly", exc_info=True)

        # The first tick of each interval defers the sync: the tick's timestamp is the same on every server, so
        # several servers on PostgreSQL defer it once, and the queueing lock keeps one pending sync at most.
        @self.app.periodic(cron=cron, periodic_id="backup-sync-tick")
        @self.app.task(name="stowage.backup_sync_tick", queue=QUEUE, pass_context=False)
        async def backup_sync_tick(timestamp: int) -> None:
            if timestamp % interval < tick_period:
                with contextlib.suppress(procrastinate_errors.AlreadyEnqueued):
                    await sync_backups.configure(queueing_lock="backup-sync").defer_async()

    async def start(self) -> None:
        """Open the job store (creating procrastinate's schema on PostgreSQL) and start the worker."""
        await self.app.open_async()
        if self._db.is_postgres:
            await asyncio.to_thread(self._ensure_schema)
        self._worker = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        """Run the worker, and start it again whenever it stops on its own.

        procrastinate stops its worker when the LISTEN connection fails (a database restart or failover cuts
        it): without this the server kept answering but re-validation, scheduled backups, lost-job checks and
        expiry never ran again until the process was restarted (tests/faults/test_postgres_restart.py).
        """
        delay = WORKER_RESTART_MIN_SECONDS
        while True:
            started = asyncio.get_running_loop().time()
            try:
                await self.app.run_worker_async(
                    queues=[QUEUE],
                    concurrency=self._concurrency,
                    install_signal_handlers=False,
                    name="stowage-revalidation",
                    delete_jobs="successful",
                )
                log.warning("the scheduler's worker stopped; starting it again in %.0f s", delay)
            except Exception:
                log.warning("the scheduler's worker failed; starting it again in %.0f s", delay, exc_info=True)
            if asyncio.get_running_loop().time() - started > WORKER_HEALTHY_SECONDS:
                delay = WORKER_RESTART_MIN_SECONDS  # it ran fine for a while: this is a new outage
            await asyncio.sleep(delay)
            # Doubling while the database stays away, so a long outage is not a busy loop of failed connects.
            delay = min(delay * 2, WORKER_RESTART_MAX_SECONDS)

    async def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Stop the worker and close the job store, giving up after ``timeout`` seconds."""
        # Bounded: with the database gone, procrastinate keeps retrying its connections and a shutdown that
        # waits for it never ends (the process would then only die to SIGKILL).
        # Not wait_for: on timeout it cancels and then *waits for the cancellation to finish*, and the job
        # store's connection pool shields its close, so a vanished database still held the shutdown for ~10 s.
        stopping = asyncio.ensure_future(self._stop())
        done, _ = await asyncio.wait({stopping}, timeout=timeout)
        if not done:
            stopping.cancel()
            log.warning("the re-validation worker did not stop within %s s; leaving it behind", timeout)

    async def _stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
            self._worker = None
        await self.app.close_async()

    def _ensure_schema(self) -> None:
        # An advisory lock serialises concurrent first starts of several servers on one database.
        with self._db.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(7347110001)"))
            exists = conn.execute(text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")).scalar()
            if not exists:
                # Passed to the driver as is: the schema's PL/pgSQL uses '%' placeholders of its own.
                driver: Any = conn.connection.driver_connection
                driver.execute(self.app.schema_manager.get_schema())
