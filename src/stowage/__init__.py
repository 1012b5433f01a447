"""Stowage: a control plane for Kubernetes backups into S3 with dynamic (STS) credentials."""

__version__ = "0.1.0"
