import io
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import keys.identity as identity_mod
from keys.identity import (
    Identity,
    KeyFileError,
    KeyFileExistsError,
    KeyFileMissingError,
    KeyFilePermissionError,
    PassphraseRequiredError,
    load_identity,
    load_or_create_identity,
    passphrase_from_environment,
    save_identity,
    verify_signature,
)

SEED = bytes(range(32))


@pytest.fixture
def umask():
    """Set a umask for one test and always restore the previous one."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_seed_round_trip_and_signatures() -> None:
    ident = Identity.from_seed(SEED)
    assert ident.seed == SEED
    assert Identity.from_seed(ident.seed).peer_id == ident.peer_id
    assert len(ident.public_key) == 32
    sig = ident.sign(b"hello")
    assert verify_signature(ident.public_key, sig, b"hello")
    assert not verify_signature(ident.public_key, sig, b"hellO")
    assert not verify_signature(Identity.generate().public_key, sig, b"hello")


def test_generated_identities_differ() -> None:
    assert Identity.generate().peer_id != Identity.generate().peer_id


@pytest.mark.parametrize(
    "args",
    [
        (b"", b"", b""),
        (bytes(31), bytes(64), b"x"),
        (bytes(32), bytes(63), b"x"),
        ("k" * 32, bytes(64), b"x"),
        (bytes(32), None, b"x"),
        (bytes(32), bytes(64), None),
        (b"\xff" * 32, bytes(64), b"x"),
    ],
)
def test_verify_signature_never_raises(args: tuple) -> None:
    assert verify_signature(*args) is False


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33), "x" * 32])
def test_from_seed_rejects_wrong_length(seed: object) -> None:
    with pytest.raises(ValueError):
        Identity.from_seed(seed)  # type: ignore[arg-type]


def test_repr_does_not_leak_the_seed() -> None:
    ident = Identity.from_seed(SEED)
    assert SEED.hex() not in repr(ident) and ident.peer_id in repr(ident)


def test_save_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    ident = Identity.from_seed(SEED)
    save_identity(ident, path)
    assert mode_of(path) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert load_identity(path).seed == SEED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["identity.key"]  # no temp file left


def test_save_creates_missing_directories_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "keys" / "identity.key"
    save_identity(Identity.from_seed(SEED), path)
    assert mode_of(path.parent) == 0o700
    assert load_identity(path).seed == SEED


@pytest.mark.parametrize("mask", [0o000, 0o002, 0o277])
def test_file_is_0600_whatever_the_umask(tmp_path: Path, umask, mask: int) -> None:
    umask(mask)
    path = tmp_path / "identity.key"
    save_identity(Identity.from_seed(SEED), path)
    assert mode_of(path) == 0o600


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    save_identity(Identity.from_seed(SEED), path)
    before = path.read_bytes()
    with pytest.raises(KeyFileExistsError):
        save_identity(Identity.generate(), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["identity.key"]


def test_save_never_clobbers_a_file_that_appears_after_the_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Another process creates the key between our existence check and our publish step.
    path = tmp_path / "identity.key"
    save_identity(Identity.from_seed(SEED), path)
    before = path.read_bytes()
    monkeypatch.setattr(identity_mod.os.path, "lexists", lambda p: False)
    with pytest.raises(KeyFileExistsError):
        save_identity(Identity.generate(), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["identity.key"]


def test_save_refuses_to_follow_a_dangling_symlink(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(KeyFileExistsError):
        save_identity(Identity.from_seed(SEED), path)
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606, 0o610, 0o601])
def test_load_refuses_group_or_other_access(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "identity.key"
    save_identity(Identity.from_seed(SEED), path)
    path.chmod(mode)
    with pytest.raises(KeyFilePermissionError) as info:
        load_identity(path)
    assert str(info.value) == f"Permissions {mode:04o} for '{path}' are too open; run: chmod 600 {path}"


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_load_accepts_owner_only_modes(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "identity.key"
    save_identity(Identity.from_seed(SEED), path)
    path.chmod(mode)
    assert load_identity(path).seed == SEED


def test_load_missing_file(tmp_path: Path) -> None:
    # Its own type, so that a daemon can tell "no key" (run init) from a broken key.
    with pytest.raises(KeyFileMissingError, match="no identity key file"):
        load_identity(tmp_path / "nope.key")
    assert not (tmp_path / "nope.key").exists()


def test_a_broken_key_is_not_a_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    path.write_bytes(b"")
    path.chmod(0o600)
    with pytest.raises(KeyFileError) as info:
        load_identity(path)
    assert not isinstance(info.value, KeyFileMissingError)


def test_passphrase_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    save_identity(Identity.from_seed(SEED), path, b"correct horse")
    assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert SEED not in path.read_bytes()
    assert load_identity(path, b"correct horse").seed == SEED
    with pytest.raises(PassphraseRequiredError):
        load_identity(path)
    with pytest.raises(PassphraseRequiredError):
        load_identity(path, b"")
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_identity(path, b"battery staple")


def test_empty_passphrase_means_unencrypted(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    save_identity(Identity.from_seed(SEED), path, b"")
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert load_identity(path, b"").seed == SEED


def test_passphrase_for_unencrypted_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    save_identity(Identity.from_seed(SEED), path)
    with pytest.raises(KeyFileError, match="not encrypted"):
        load_identity(path, b"secret")


def write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a key at all",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    ],
)
def test_corrupt_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "identity.key"
    write_private(path, content)
    passphrase = b"pw" if b"ENCRYPTED" in content else None
    with pytest.raises(KeyFileError):
        load_identity(path, passphrase)


def test_non_ed25519_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(path, pem)
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        load_identity(path)


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    write_private(path, b"x" * (64 * 1024 + 1))
    with pytest.raises(KeyFileError, match="larger"):
        load_identity(path)


def test_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    path.mkdir(mode=0o700)
    with pytest.raises(KeyFileError):
        load_identity(path)


def test_load_or_create(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    first, created = load_or_create_identity(path, None)
    assert created
    second, created_again = load_or_create_identity(path, None)
    assert not created_again and second.seed == first.seed


def test_load_or_create_with_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    first, _ = load_or_create_identity(path, b"pw")
    with pytest.raises(PassphraseRequiredError):
        load_or_create_identity(path, None)
    again, created = load_or_create_identity(path, b"pw")
    assert not created and again.seed == first.seed


def test_load_or_create_loses_a_race_gracefully(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "identity.key"
    winner = Identity.from_seed(SEED)
    real_save = identity_mod.save_identity

    def racing_save(identity: Identity, p: Path, passphrase: bytes | None = None) -> None:
        real_save(winner, p, passphrase)  # another process gets there first
        real_save(identity, p, passphrase)

    monkeypatch.setattr(identity_mod, "save_identity", racing_save)
    ident, created = load_or_create_identity(path, None)
    assert not created and ident.seed == SEED


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def fail_getpass(prompt: str = "") -> str:
    raise AssertionError("must not prompt")


def test_passphrase_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity_mod.getpass, "getpass", fail_getpass)
    monkeypatch.setattr(identity_mod.sys, "stdin", FakeTty())
    assert passphrase_from_environment({"SOVEREIGN_PASSPHRASE": "s3cret"}, prompt=True) == b"s3cret"
    assert passphrase_from_environment({"SOVEREIGN_PASSPHRASE": ""}, prompt=True) is None
    assert passphrase_from_environment({}, prompt=False) is None


def test_passphrase_prompt_only_on_a_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity_mod.getpass, "getpass", lambda prompt="": "typed")
    monkeypatch.setattr(identity_mod.sys, "stdin", FakeTty())
    assert passphrase_from_environment({}, prompt=True) == b"typed"
    monkeypatch.setattr(identity_mod.sys, "stdin", io.StringIO())
    assert passphrase_from_environment({}, prompt=True) is None
    monkeypatch.setattr(identity_mod.sys, "stdin", None)
    assert passphrase_from_environment({}, prompt=True) is None
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(identity_mod.sys, "stdin", closed)
    assert passphrase_from_environment({}, prompt=True) is None
