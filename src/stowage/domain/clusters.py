"""Clusters and their agents: names, agent tokens, connection status, work items, per-cluster session policies."""

from __future__ import annotations

import enum
import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stowage.domain.locations import LocationSpec
from stowage.domain.policies import (
    OBJECT_ACTIONS,
    SPEC_EC2_ACTIONS,
    VERSION,
    Policy,
    Statement,
    bucket_arn,
    kms_statement,
)

AGENT_TOKEN_PREFIX = "stwa_"
# Connected means a heartbeat arrived within this many heartbeat intervals.
HEARTBEAT_MISSES_ALLOWED = 3
CLUSTER_NAME_MAX_LENGTH = 63
# STS refuses inline session policies longer than this (plaintext, compact JSON).
SESSION_POLICY_MAX_CHARS = 2048
CLUSTERS_DIR = "clusters"
_NAME_CHARS = frozenset(string.ascii_lowercase + string.digits + "-")
_SESSION_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "+=,.@-_")


class ConnectionStatus(enum.StrEnum):
    """Whether a cluster's agent is talking to the control plane."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


def cluster_name_problem(name: str) -> str | None:
    """Why a cluster name is not acceptable (a DNS label, like Kubernetes names), or None."""
    if not name:
        return "Cluster name is required."
    if len(name) > CLUSTER_NAME_MAX_LENGTH:
        return f"Cluster name must be at most {CLUSTER_NAME_MAX_LENGTH} characters (it has {len(name)})."
    bad = sorted(set(name) - _NAME_CHARS)
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        hint = f" Try '{suggest_cluster_name(name)}'." if suggest_cluster_name(name) else ""
        return f"Cluster name may contain only lowercase letters, digits and '-' (found {shown}).{hint}"
    if name[0] == "-" or name[-1] == "-":
        return "Cluster name must start and end with a letter or digit."
    return None


def suggest_cluster_name(name: str) -> str:
    """A valid name close to what was typed ('' when nothing is left)."""
    lowered = "".join(ch if ch in _NAME_CHARS else "-" for ch in name.strip().lower())
    collapsed = re.sub(r"-{2,}", "-", lowered).strip("-")
    return collapsed[:CLUSTER_NAME_MAX_LENGTH].rstrip("-")


def connection_status(
    last_heartbeat_at: datetime | None, *, now: datetime, interval_seconds: float
) -> ConnectionStatus:
    """Connected when the last heartbeat arrived within the allowed number of intervals."""
    if last_heartbeat_at is None:
        return ConnectionStatus.DISCONNECTED
    age = (now - last_heartbeat_at).total_seconds()
    return (
        ConnectionStatus.CONNECTED
        if age <= HEARTBEAT_MISSES_ALLOWED * interval_seconds
        else ConnectionStatus.DISCONNECTED
    )


def token_hint(token: str) -> str:
    """What may be shown of a token: its last four characters."""
    return token[-4:]


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One unit of work handed to an agent in a heartbeat answer (backups, restores, ... in later issues).

    ``kind`` selects the agent's handler; ``params`` is the kind's own JSON object; an agent that does not
    know a kind reports it as unsupported instead of failing.
    """

    id: str
    kind: str
    location_id: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


# What agents may do: write and read backups, but never delete them. Deletion and expiry run with the
# control plane's own session, so a compromised cluster cannot destroy its backups (or its snapshots).
AGENT_DENIED_ACTIONS = frozenset({"s3:DeleteObject", "ec2:DeleteSnapshot"})
AGENT_OBJECT_ACTIONS = [a for a in OBJECT_ACTIONS if a not in AGENT_DENIED_ACTIONS]
AGENT_EC2_ACTIONS = [a for a in SPEC_EC2_ACTIONS if a not in AGENT_DENIED_ACTIONS]


# -- the per-cluster area of a location -------------------------------------------------------------------
def cluster_prefix(location_prefix: str | None, cluster_id: str) -> str:
    """The key prefix a cluster owns in a location: ``<prefix>/clusters/<cluster-id>`` (no slashes around)."""
    base = (location_prefix or "").strip("/")
    own = f"{CLUSTERS_DIR}/{cluster_id}"
    return f"{base}/{own}" if base else own


def cluster_session_policy(spec: LocationSpec, cluster_id: str, *, partition: str = "aws") -> Policy:
    """The STS session policy of one cluster's credentials: objects and listings only under its own prefix.

    A session policy can only narrow what the role's permission policy grants, so another cluster's
    credentials (with another prefix) can neither read nor overwrite this cluster's objects; and no agent
    can delete objects or snapshots (``AGENT_DENIED_ACTIONS``).
    """
    root = cluster_prefix(spec.prefix, cluster_id)
    bucket = bucket_arn(spec.bucket, partition)
    statements: list[Statement] = [
        {
            "Sid": "ClusterObjects",
            "Effect": "Allow",
            "Action": list(AGENT_OBJECT_ACTIONS),
            "Resource": [f"{bucket}/{root}/*"],
        },
        {
            "Sid": "ClusterListing",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [bucket],
            # The trailing slash matters: "<root>*" would also match a longer id that starts like this one.
            "Condition": {"StringLike": {"s3:prefix": [f"{root}/", f"{root}/*"]}},
        },
    ]
    if spec.ec2_checks_apply:
        statements.append({"Sid": "Snapshots", "Effect": "Allow", "Action": list(AGENT_EC2_ACTIONS), "Resource": "*"})
    if spec.kms_key_arn:
        statements.append(kms_statement(spec.kms_key_arn))
    return {"Version": VERSION, "Statement": statements}


def render_compact(policy: Policy) -> str:
    """A policy as compact, deterministic JSON (what STS measures against its length limit)."""
    return json.dumps(policy, separators=(",", ":"))


def session_policy_problem(rendered: str) -> str | None:
    """Why a rendered session policy cannot be sent to STS, or None."""
    if len(rendered) > SESSION_POLICY_MAX_CHARS:
        return (
            f"The per-cluster session policy would be {len(rendered)} characters; STS accepts at most "
            f"{SESSION_POLICY_MAX_CHARS}. Use a shorter location prefix or KMS key ARN."
        )
    return None


def agent_session_name(project: str, cluster: str) -> str:
    """A RoleSessionName that names the cluster in CloudTrail: ``stowage-<project>-<cluster>``, <= 64."""
    raw = f"stowage-{project}-{cluster}"
    return "".join(ch if ch in _SESSION_NAME_CHARS else "-" for ch in raw)[:64]
