"""Ed25519 keys and DSSE signatures (the ``cryptography`` package does the cryptography).

A signature is over DSSE's pre-authentication encoding (PAE), so a payload cannot be replayed
under another type: ``"DSSEv1" SP len(type) SP type SP len(body) SP body`` (DSSE v1 protocol,
secure-systems-lab/dsse). The key id is the sha256 of the raw 32-byte public key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from govssl.errors import ConfigError

__all__ = [
    "PublicKey", "SigningKey", "generate_keys", "load_signing_key", "load_public_key",
    "pae", "canonical_json", "SIGNING_KEY_ENV",
]

#: environment variable naming a private key file that signs audit evidence
SIGNING_KEY_ENV = "GOVSSL_SIGNING_KEY"


def canonical_json(data) -> bytes:
    """Sorted keys, no spaces, UTF-8: the same data always gives the same bytes."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding (lengths are byte counts in ASCII decimal)."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class PublicKey:
    """A public key that verifies; ``name`` is where it came from (a file), for messages."""

    key: Ed25519PublicKey
    name: str = ""

    @property
    def keyid(self) -> str:
        return hashlib.sha256(_raw(self.key)).hexdigest()

    @property
    def raw_b64(self) -> str:
        return base64.b64encode(_raw(self.key)).decode("ascii")

    @classmethod
    def from_raw_b64(cls, text: str, name: str = "") -> "PublicKey":
        return cls(Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True)), name)

    def verifies(self, payload_type: str, body: bytes, sig_b64: str) -> bool:
        try:
            self.key.verify(base64.b64decode(sig_b64, validate=True), pae(payload_type, body))
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    """A private key. Its repr never shows the key; nothing writes it anywhere."""

    key: Ed25519PrivateKey
    name: str = ""

    def __repr__(self) -> str:
        return f"SigningKey(keyid={self.public.keyid[:16]}..., file={self.name!r})"

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.key.public_key(), self.name)

    def sign(self, payload_type: str, body: bytes) -> dict:
        """A DSSE signature entry ``{keyid, sig}`` over PAE(payload_type, body)."""
        sig = self.key.sign(pae(payload_type, body))
        return {"keyid": self.public.keyid, "sig": base64.b64encode(sig).decode("ascii")}


def generate_keys(prefix: str | Path) -> tuple[Path, Path]:
    """Write ``PREFIX.key`` (PKCS#8 PEM, mode 0600) and ``PREFIX.pub``; never overwrite."""
    prefix = Path(prefix)
    private_path, public_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigError(f"{path}: already exists; refusing to overwrite a key")
    if not private_path.parent.is_dir():
        raise ConfigError(f"{private_path.parent}: folder not found")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private_path, public_path


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} file: {exc}") from None


def load_signing_key(path: str | Path) -> SigningKey:
    """An unencrypted Ed25519 private key in PEM; anything else is a ConfigError naming the file."""
    path = Path(path)
    data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        reason = "it is encrypted" if "encrypted" in str(exc).lower() or isinstance(exc, TypeError) else "not a PEM private key"
        raise ConfigError(f"{path}: cannot load the private key: {reason}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 private key (make one with `govssl keys generate`)")
    return SigningKey(key, str(path))


def load_public_key(path: str | Path) -> PublicKey:
    """An Ed25519 public key in PEM (as written by ``govssl keys generate``)."""
    path = Path(path)
    data = _read(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ConfigError(f"{path}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: not an Ed25519 public key")
    return PublicKey(key, str(path))
