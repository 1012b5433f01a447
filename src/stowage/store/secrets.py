"""Encryption at rest for stored secrets (Fernet: AES-128-CBC + HMAC-SHA256)."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from stowage.errors import StowageError


class SecretBox:
    """Encrypts and decrypts secrets with one key; the key never appears in repr."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    @classmethod
    def from_passphrase(cls, passphrase: str) -> SecretBox:
        """Derive a Fernet key from an operator-supplied ``STOWAGE_SECRET_KEY`` of any form."""
        try:
            raw = base64.urlsafe_b64decode(passphrase.encode())
            if len(raw) == 32:
                return cls(passphrase.encode())
        except ValueError:
            pass
        digest = hashlib.sha256(passphrase.encode()).digest()
        return cls(base64.urlsafe_b64encode(digest))

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> SecretBox:
        """Load ``<data dir>/secret.key``, generating it (mode 0600) on first use."""
        path = data_dir / "secret.key"
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key())
        return cls(path.read_bytes().strip())

    def encrypt(self, plaintext: str) -> bytes:
        """Encrypt a secret."""
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, token: bytes) -> str:
        """Decrypt a secret; a wrong key is a clear operator error, not a crash."""
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken as exc:
            raise StowageError(
                "A stored secret cannot be decrypted: STOWAGE_SECRET_KEY differs from the key it was saved with."
            ) from exc
