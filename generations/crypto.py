"""Provider keys at rest: MultiFernet, newest key first, old keys still decrypt.

Keys come from NANOWEB_ENCRYPTION_KEYS; in the embedded default they are
generated once into var/. A value that does not decrypt raises: ciphertext is
never sent upstream as if it were a key.
"""

from __future__ import annotations

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class KeyDecryptionError(RuntimeError):
    pass


def _configured_keys() -> list[str]:
    if settings.NANOWEB_ENCRYPTION_KEYS:
        return list(settings.NANOWEB_ENCRYPTION_KEYS)
    path = settings.NANOWEB_ENCRYPTION_KEY_FILE
    try:
        with path.open("x") as fd:  # first run: exactly one process writes the key
            fd.write(Fernet.generate_key().decode() + "\n")
        path.chmod(0o600)
    except FileExistsError:
        pass
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


@functools.cache
def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in _configured_keys()])


def encrypt(clear: str) -> str:
    return _fernet().encrypt(clear.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise KeyDecryptionError(
            "A provider key could not be decrypted: NANOWEB_ENCRYPTION_KEYS does not "
            "contain the key it was encrypted with."
        ) from exc


def reset_cache() -> None:
    _fernet.cache_clear()
