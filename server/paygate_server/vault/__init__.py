"""The card vault (SPEC §5): cards behind checkout tokens, encrypted at rest.

- :mod:`.service` — :class:`VaultService` (``gateway.vault``): ``store`` a
  decrypted card and get a single-use token; ``resolve_token`` turns a token into a
  :class:`~paygate_server.cards.resolved.ResolvedCard` for ``process``; ``purge``
  expired tokens' CVCs.
- :mod:`.datakeys` — versioned AES-256 data keys wrapped by the master key, and
  ``rotate_data_key`` (``paygate vault rotate-data-key``).
- :mod:`.extension` — wiring into the gateway (``app.EXTENSIONS``): the service and the
  background purge.
"""
