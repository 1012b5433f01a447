"""Roles and what each may do."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.StrEnum):
    """A role in a tenant."""

    ADMIN = "admin"
    EDITOR = "editor"
    VIEWER = "viewer"


class Permission(enum.StrEnum):
    """Actions guarded by roles."""

    READ = "read"
    MANAGE_LOCATIONS = "manage_locations"
    MANAGE_CLUSTERS = "manage_clusters"
    MANAGE_PROJECTS = "manage_projects"
    MANAGE_TOKENS = "manage_tokens"
    ROTATE_EXTERNAL_ID = "rotate_external_id"
    SKIP_VALIDATION = "skip_validation"
    RUN_BACKUPS = "run_backups"
    DELETE_BACKUPS = "delete_backups"


_GRANTS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.EDITOR: frozenset(
        {Permission.READ, Permission.MANAGE_LOCATIONS, Permission.MANAGE_CLUSTERS, Permission.RUN_BACKUPS}
    ),
    Role.ADMIN: frozenset(Permission),
}


def allows(role: Role, permission: Permission) -> bool:
    """True when the role grants the permission."""
    return permission in _GRANTS[role]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token or a user with a role in one tenant."""

    tenant_id: str
    role: Role
    subject: str
    kind: str = "token"
