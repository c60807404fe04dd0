"""A node's Ed25519 identity and its key file.

The key file is the node: whoever reads it can impersonate the node, and losing it loses the
node's reputation and ledger account. Hence 0600 enforced on load (like ssh), atomic creation that
never clobbers an existing key, and optional passphrase encryption.
"""

from __future__ import annotations

import getpass
import os
import secrets
import shlex
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError, CryptoError

from keys.peerid import peer_id_from_public_key

PASSPHRASE_ENV = "SOVEREIGN_PASSPHRASE"
# An Ed25519 PKCS#8 PEM is about 120 bytes (250 encrypted); a bigger file is not ours.
MAX_KEY_FILE_SIZE = 64 * 1024
_ENCRYPTED_PEM = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"


class KeyFileError(Exception):
    """The key file is missing, unreadable, corrupt, or cannot be written."""


class KeyFileMissingError(KeyFileError):
    """There is no key file: only `sovereign init` creates one (a daemon never does)."""


class KeyFilePermissionError(KeyFileError):
    """The key file can be read or written by group or others."""


class PassphraseRequiredError(KeyFileError):
    """The key file is encrypted and no passphrase was given."""


class KeyFileExistsError(KeyFileError):
    """save_identity refused to overwrite an existing key file."""


class Identity:
    """An Ed25519 keypair with its derived libp2p peer id."""

    __slots__ = ("_key", "_public_key", "_peer_id")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._public_key = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._peer_id = peer_id_from_public_key(self._public_key)

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(bytes(seed)))

    @property
    def seed(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def peer_id(self) -> str:
        return self._peer_id

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def __repr__(self) -> str:
        # Never the seed: identities end up in logs and tracebacks.
        return f"Identity(peer_id={self._peer_id!r})"


def verify_signature(public_key: bytes, signature: bytes, data: bytes) -> bool:
    if not (
        isinstance(public_key, bytes)
        and len(public_key) == 32
        and isinstance(signature, bytes)
        and len(signature) == 64
        and isinstance(data, (bytes, bytearray, memoryview))
    ):
        return False
    # libsodium (PyNaCl, already installed by libp2p) verifies in about 60 us where OpenSSL via
    # `cryptography` takes about 106 us on this hardware; every replica verifies every ledger
    # transaction and every bundle, so this is the federation's throughput. Both are strict
    # RFC 8032 verifiers (canonical S, no small-order keys are accepted by either for our keys).
    try:
        crypto_sign_open(signature + bytes(data), public_key)
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        return False
    return True


def save_identity(identity: Identity, path: Path, passphrase: bytes | None = None) -> None:
    """Write the key as PKCS#8 PEM, mode 0600, atomically; never overwrite an existing file.

    An empty passphrase means none, matching `passphrase_from_environment`.
    """
    path = Path(path)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem = identity._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise KeyFileError(f"cannot create directory {directory}: {e.strerror}") from e
    if os.path.lexists(path):
        raise KeyFileExistsError(f"refusing to overwrite existing key file {path}")

    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        # 0600 from the first byte: the mode is set at creation, so the key is never briefly
        # readable; fchmod also undoes a umask that would strip the owner's own bits.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(pem)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        _publish_without_clobbering(tmp, path)
        _fsync_directory(directory)
    except KeyFileError:
        raise
    except OSError as e:
        raise KeyFileError(f"cannot write key file {path}: {e.strerror}") from e
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _publish_without_clobbering(tmp: Path, path: Path) -> None:
    # link() is the atomic "rename unless the target exists": two nodes initialising the same state
    # dir at once cannot overwrite each other's key. The caller unlinks tmp afterwards.
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise KeyFileExistsError(f"refusing to overwrite existing key file {path}") from None
    except OSError:
        # Filesystems without hard links: fall back to check-then-rename, racy only against
        # a concurrent initialisation of the same path.
        if os.path.lexists(path):
            raise KeyFileExistsError(f"refusing to overwrite existing key file {path}") from None
        os.rename(tmp, path)


def _fsync_directory(directory: Path) -> None:
    # Without this, a power loss right after creation can leave no key file at all.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_identity(path: Path, passphrase: bytes | None = None) -> Identity:
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyFileMissingError(f"no identity key file at {path}") from None
    except OSError as e:
        raise KeyFileError(f"cannot open key file {path}: {e.strerror}") from e
    try:
        # fstat on the open descriptor: the file checked is the file read.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"key file {path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            quoted = shlex.quote(str(path))
            raise KeyFilePermissionError(
                f"Permissions {mode:04o} for '{path}' are too open; run: chmod 600 {quoted}"
            )
        if st.st_size > MAX_KEY_FILE_SIZE:
            raise KeyFileError(f"key file {path} is {st.st_size} bytes, larger than any key file")
        data = os.read(fd, MAX_KEY_FILE_SIZE + 1)
    except OSError as e:
        raise KeyFileError(f"cannot read key file {path}: {e.strerror}") from e
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE_SIZE:
        raise KeyFileError(f"key file {path} is larger than any key file")
    return Identity(_parse_pem(data, path, passphrase or None))


def _parse_pem(data: bytes, path: Path, passphrase: bytes | None) -> Ed25519PrivateKey:
    encrypted = _ENCRYPTED_PEM in data
    if encrypted and passphrase is None:
        raise PassphraseRequiredError(f"key file {path} is encrypted; a passphrase is required")
    if not encrypted and passphrase is not None:
        # Refused rather than ignored: the operator believes the key is protected and it is not.
        raise KeyFileError(f"key file {path} is not encrypted but a passphrase was given")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except ValueError:
        if encrypted:
            raise KeyFileError(f"wrong passphrase for key file {path} (or the file is corrupt)") from None
        raise KeyFileError(f"key file {path} is corrupt or not a PEM private key") from None
    except (TypeError, UnsupportedAlgorithm) as e:
        raise KeyFileError(f"key file {path} cannot be loaded: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"key file {path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def load_or_create_identity(path: Path, passphrase: bytes | None) -> tuple[Identity, bool]:
    """Load the key at `path`, creating it first if there is none; the bool says it was created."""
    path = Path(path)
    if not os.path.lexists(path):
        identity = Identity.generate()
        try:
            save_identity(identity, path, passphrase)
            return identity, True
        except KeyFileExistsError:
            pass  # another process created it first: theirs wins, load it
    return load_identity(path, passphrase), False


def passphrase_from_environment(env: Mapping[str, str], *, prompt: bool) -> bytes | None:
    """SOVEREIGN_PASSPHRASE if set (empty means no passphrase), else a TTY prompt if allowed."""
    value = env.get(PASSPHRASE_ENV)
    if value is not None:
        return value.encode() or None
    if not prompt:
        return None
    stdin = sys.stdin
    try:
        interactive = stdin is not None and stdin.isatty()
    except ValueError:  # closed stdin, as under some service managers
        interactive = False
    if not interactive:
        return None
    return getpass.getpass("Identity key passphrase: ").encode() or None
