"""Processing payments exactly once (SPEC §7).

One module per phase, in the order a payment meets them:

- :mod:`.service` — the ``process`` operation: persist the attempt (``txn_…``, ``pending``,
  its processor ``reference``) before the processor is called, call the connector (retrying
  with the *same* reference), turn its answer into the outcome the store applies once,
  answer within the wait budget.
- :mod:`.settle` — what every processor operation shares: unknown answers and the
  reconciler's back-off.
- :mod:`.reconciler` — settle every attempt whose outcome is not known.
- :mod:`.connectors` — the processors.
"""
from __future__ import annotations

__all__: list[str] = []
