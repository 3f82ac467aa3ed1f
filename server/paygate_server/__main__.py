"""``python -m paygate_server`` is the ``paygate`` command."""
from __future__ import annotations

import sys

from paygate_server.command import main

sys.exit(main())
