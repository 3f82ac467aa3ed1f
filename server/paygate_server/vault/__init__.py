"""The card vault (SPEC §5): cards behind checkout tokens, encrypted at rest.

- :mod:`.service` — :class:`VaultService` (``gateway.vault``): ``store`` a
  decrypted card and get a single-use token; ``redeem`` a token into a
  :class:`~paygate_server.processing.service.ResolvedCard` for ``process``; ``purge``
  expired tokens' CVCs.
- :mod:`.datakeys` — versioned AES-256 data keys wrapped by the master key, and
  ``rotate_data_key`` (``paygate vault rotate-data-key``).
- :mod:`.extension` — wiring into the gateway (``app.EXTENSIONS``): the service and the
  background purge.
"""
from __future__ import annotations

from paygate_server.vault.datakeys import (
    DATA_KEY_PURPOSE,
    DataKeyStore,
    VaultDecryptError,
    rotate_data_key,
)
from paygate_server.vault.service import TOKEN_INVALID_MESSAGE, StoredCard, VaultService, hash_token

__all__ = [
    "DATA_KEY_PURPOSE",
    "TOKEN_INVALID_MESSAGE",
    "DataKeyStore",
    "StoredCard",
    "VaultDecryptError",
    "VaultService",
    "hash_token",
    "rotate_data_key",
]
