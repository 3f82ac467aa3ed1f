"""Processing payments exactly once (SPEC §7).

One module per phase, in the order a payment meets them:

- :mod:`.attempts` — persist the attempt (``txn_…``, ``pending``, its processor
  ``reference``) before the processor is called, and apply an outcome afterwards; every
  state change is one conditional statement guarded by the database (at most one attempt in
  flight per intent, at most one successful charge, ever).
- :mod:`.service` — the ``process`` operation: resolve the card, persist the attempt, call
  the connector (retrying with the *same* reference), record the outcome, answer within the
  wait budget.
- :mod:`.reconciler` — settle every attempt whose outcome is not known.
- :mod:`.connectors` — the processors.
"""
from __future__ import annotations

__all__: list[str] = []
