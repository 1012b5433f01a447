"""The composition root: builds every service from settings, once, at start (never at import)."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

from stowage.aws.backup_storage import BackupStorage, LocationRef
from stowage.aws.broker import CredentialBroker
from stowage.aws.identity import IdentityResolver
from stowage.config import Settings
from stowage.domain.clusters import WorkItem
from stowage.services.backup_sync import BackupSyncService
from stowage.services.backups import WORK_KIND, BackupService
from stowage.services.clusters import AgentPrincipal, ClusterService
from stowage.services.locations import LocationService
from stowage.services.metrics import Metrics
from stowage.services.policies import PolicyService
from stowage.services.restores import WORK_KIND as RESTORE_KIND
from stowage.services.restores import RestoreService
from stowage.services.scheduler import RevalidationScheduler
from stowage.services.tenancy import TenancyService
from stowage.services.users import UserService
from stowage.services.validation import LocationValidator
from stowage.services.vending import VendingService
from stowage.services.workspaces import WorkspaceService
from stowage.store.database import Database
from stowage.store.secrets import SecretBox


@dataclass
class Runtime:
    """Every long-lived collaborator of a Stowage server process."""

    settings: Settings
    db: Database
    box: SecretBox
    identity: IdentityResolver
    broker: CredentialBroker
    validator: LocationValidator
    tenancy: TenancyService
    locations: LocationService
    policies: PolicyService
    scheduler: RevalidationScheduler
    users: UserService
    clusters: ClusterService
    vending: VendingService
    backups: BackupService
    restores: RestoreService
    workspaces: WorkspaceService
    backup_sync: BackupSyncService
    generated_admin_token: str | None = field(default=None)
    metrics: Metrics = field(default_factory=Metrics)

    @classmethod
    def start(cls, settings: Settings) -> Runtime:
        """Open the database, apply migrations, bootstrap the first tenant and wire the services."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        db.migrate()
        box = (
            SecretBox.from_passphrase(settings.secret_key)
            if settings.secret_key
            else SecretBox.from_data_dir(settings.data_dir)
        )
        identity = IdentityResolver()
        metrics = Metrics()
        broker = CredentialBroker(settings, on_sts_call=metrics.sts_call)
        validator = LocationValidator(settings=settings, broker=broker, identity=identity, metrics=metrics)
        tenancy = TenancyService(db)
        generated = tenancy.bootstrap(data_dir=settings.data_dir, admin_token=settings.admin_token)
        users = UserService(db)
        password = users.bootstrap(
            data_dir=settings.data_dir, email=settings.admin_email, password=settings.admin_password
        )
        if password is not None:
            path = settings.data_dir / "admin-password"
            if sys.stderr.isatty():
                # A person is watching: show it once. Only its argon2 hash is kept in the database.
                print(
                    f"\nWeb UI admin (shown once, also saved to {path}):\n"
                    f"  email: {settings.admin_email}\n  password: {password}\n",
                    file=sys.stderr,
                    flush=True,
                )
            # Never into a collected log: the line says where the password is, not what it is.
            logging.getLogger("stowage.server").warning(
                "web admin password generated", extra={"file": str(path), "email": settings.admin_email}
            )
        locations = LocationService(
            db=db, box=box, validator=validator, default_interval_minutes=settings.revalidate_interval_minutes
        )
        policies = PolicyService(tenancy=tenancy, identity=identity)
        clusters = ClusterService(db=db, heartbeat_seconds=settings.agent_heartbeat_seconds, metrics=metrics)
        storage = BackupStorage(broker, allow_private_endpoints=settings.allow_private_endpoints)
        backups = BackupService(
            db=db,
            locations=locations,
            storage=storage,
            ref_factory=LocationRef,
            lease_seconds=settings.backup_lease_seconds,
            start_timeout_seconds=settings.backup_start_timeout_seconds,
            delete_timeout_seconds=settings.backup_delete_timeout_seconds,
            metrics=metrics,
        )

        backup_sync = BackupSyncService(db=db, locations=locations, storage=storage, ref_factory=LocationRef)
        restores = RestoreService(
            db=db,
            lease_seconds=settings.backup_lease_seconds,
            start_timeout_seconds=settings.backup_start_timeout_seconds,
            metrics=metrics,
        )

        workspaces = WorkspaceService(
            db=db, backups=backups, restores=restores, heartbeat_seconds=settings.agent_heartbeat_seconds
        )

        def work(agent: AgentPrincipal) -> list[WorkItem]:
            jobs = [WorkItem(id=i, kind=WORK_KIND, location_id=loc, params=p) for i, loc, p in backups.work_for(agent)]
            jobs += [
                WorkItem(id=i, kind=RESTORE_KIND, location_id=loc, params=p) for i, loc, p in restores.work_for(agent)
            ]
            return jobs

        clusters.set_work_source(work)
        scheduler = RevalidationScheduler(
            db=db,
            locations=locations,
            backups=backups,
            restores=restores,
            workspaces=workspaces,
            backup_sync=backup_sync,
            sync_interval_minutes=settings.backup_sync_interval_minutes,
            concurrency=settings.revalidate_concurrency,
            tick_seconds=settings.scheduler_tick_seconds,
        )
        vending = VendingService(
            db=db,
            locations=locations,
            broker=broker,
            identity=identity,
            refresh_seconds=settings.effective_refresh_seconds,
            metrics=metrics,
        )
        # The services subscribed their caches; from now on other servers' changes reach them too.
        db.changes.start()
        return cls(
            settings=settings,
            db=db,
            box=box,
            identity=identity,
            broker=broker,
            validator=validator,
            tenancy=tenancy,
            locations=locations,
            policies=policies,
            scheduler=scheduler,
            users=users,
            clusters=clusters,
            vending=vending,
            backups=backups,
            restores=restores,
            workspaces=workspaces,
            backup_sync=backup_sync,
            generated_admin_token=generated,
            metrics=metrics,
        )

    def close(self) -> None:
        """Release pooled connections."""
        self.vending.close()
        self.backups.close()
        self.db.dispose()
