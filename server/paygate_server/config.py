"""Configuration from ``PAYGATE_*`` environment variables (SPEC §9), read once at start-up."""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from paygate_server.cards.keys import DEFAULT_KEY_BITS, MIN_KEY_BITS
from paygate_server.faults import unknown_point
from paygate_server.storage.urls import database_url_problem, session_url_problem

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("paygate-data")
    database_url: str = ""
    # PostgreSQL behind a transaction-mode pooler (PgBouncer): database_url is the pooler's,
    # this one reaches PostgreSQL directly for the relay's leases and the change listener,
    # which need a session of their own (docs/operations.md, "Behind PgBouncer").
    database_session_url: str = ""
    processor_url: str = "http://127.0.0.1:8081"
    master_key: str | None = None
    # Connections kept per process (PostgreSQL); a new one costs the server a fork.
    db_pool_size: int = 20
    # How long a request waits for a free pooled connection before it is answered 503
    # service_unavailable with Retry-After (SQLAlchemy's default, 30 s, outlasts clients).
    db_pool_timeout_s: float = 10.0
    # PostgreSQL over a network that can fail (docs/operations.md, "Database timeouts"): how
    # long opening a connection may take, and any one statement's round trip (0: no limit).
    # A statement past its timeout ends the request with 503 and its connection is dropped:
    # without these a blackholed or half-open connection hangs the request for good.
    db_connect_timeout_s: float = 5.0
    db_command_timeout_s: float = 10.0
    # The server ends a session of ours left idle inside a transaction this long (PostgreSQL's
    # idle_in_transaction_session_timeout, set per connection; 0: never): a connection that
    # lost its way back to us mid-transaction would otherwise hold its row locks for good.
    db_idle_in_transaction_timeout_s: float = 60.0
    # GET /readyz (docs/operations.md, "Health checks"): the longest a check waits for its
    # SELECT 1 before answering 503, and how long an outcome stands before the next check
    # queries again (a burst of checks, or several balancers, cost one query).
    ready_timeout_s: float = 1.0
    ready_cache_s: float = 0.5
    # Authentication (SPEC §3).
    timestamp_tolerance_s: int = 300
    key_cache_ttl_s: float = 1.0
    # Idempotency keys are kept at least this long (SPEC §3: ≥ 24 h).
    idempotency_ttl_s: int = 24 * 3600
    # An in-flight idempotency claim older than this is considered abandoned (crash).
    idempotency_lock_timeout_s: int = 90
    max_body_bytes: int = 64 * 1024
    # Processing (SPEC §7).
    processor_connect_timeout_s: float = 2.0
    processor_timeout_s: float = 10.0
    process_wait_budget_s: float = 5.0
    # Reconciliation (SPEC §7): when to ask the processor again about an unknown outcome
    # (seconds after each check; the last step repeats), when a reference the processor
    # never saw may be failed, and how often the safety-net sweep runs.
    reconcile_schedule_s: tuple[float, ...] = (2.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0)
    reconcile_not_found_after_s: float = 300.0
    reconcile_sweep_interval_s: float = 5.0
    # Manual capture (SPEC §4): a hold not captured within this long is voided by the gateway.
    authorization_ttl_s: float = 7 * 24 * 3600.0
    card_key_bits: int = DEFAULT_KEY_BITS  # RSA size of new checkout keys (cards/keys.py)
    # Test seam for crash tests: the process SIGKILLs itself at this named point (one of
    # faults.POINTS; any other name is refused at start-up).
    fault_point: str | None = None
    # Background work inside `paygate serve`.
    run_background: bool = True
    change_poll_interval_s: float = 0.02
    webhook_allow_private: bool = False
    # Hosted checkout (SPEC §5): a card token's lifetime, and how often expired tokens'
    # CVCs (and unused tokens' cards) are purged from the vault.
    token_ttl_s: float = 900.0
    vault_purge_interval_s: float = 30.0
    # /metrics (docs/performance.md): loopback only unless a bearer token is set; database-derived
    # gauges (intents by status, backlogs) are re-read at most this often.
    metrics_token: str | None = None
    metrics_db_refresh_s: float = 5.0
    # Change history relay (SPEC §8): runs inside `paygate serve` unless disabled (then run
    # `paygate relay`). One relay per consumer holds a lease; the others stand by.
    relay_enabled: bool = True
    relay_batch_size: int = 500
    relay_poll_interval_s: float = 0.5
    relay_lease_retry_s: float = 2.0
    # Archive: a local folder (default $PAYGATE_DATA_DIR/archive) or an S3-compatible bucket.
    archive_dir: Path | None = None
    archive_segment_max_changes: int = 5000
    archive_linger_s: float = 5.0
    archive_s3_bucket: str | None = None
    archive_s3_prefix: str = "paygate-archive"
    archive_s3_endpoint: str | None = None
    archive_s3_region: str = "us-east-1"
    archive_s3_access_key: str | None = None
    archive_s3_secret_key: str | None = None
    # Retention of the change log in the database (SPEC §8, docs/history.md "Retention"): a
    # change leaves once every consumer has it, the archive holds it verified and this long
    # has passed since it was captured; the gateway prunes every interval (0: never, then
    # run `paygate history prune`).
    history_retention_s: int = 7 * 24 * 3600
    history_prune_interval_s: float = 600.0
    # Rows verified and deleted per transaction (SQLite; PostgreSQL drops whole partitions).
    history_prune_batch_rows: int = 10_000
    # Message broker sink for multi-host deployments: nats://host:4222 (JetStream).
    broker_url: str | None = None
    broker_stream: str = "PAYGATE_CHANGES"
    broker_subject_prefix: str = "paygate.changes"
    # Webhooks (SPEC §6): seconds between attempts (each jittered ±20 %; with the defaults
    # the last attempt comes at least 3 days after the first), the per-attempt timeout and
    # how many deliveries run at once, in total and per endpoint.
    webhook_retry_schedule_s: tuple[float, ...] = (
        5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0, 86400.0)
    webhook_timeout_s: float = 15.0
    webhook_max_concurrency: int = 64
    webhook_endpoint_concurrency: int = 4
    webhook_poll_interval_s: float = 1.0
    # Webhook retention (docs/operations.md "Webhooks"): a finished delivery and an event
    # leave the database this long after (30 days, as Stripe keeps events to resend);
    # it is also how long an endpoint disabled by a 410 gets its events for a replay. The
    # gateway prunes every interval (0: never, then run `paygate webhooks prune`), in
    # transactions of at most this many rows of each kind.
    webhook_retention_s: int = 30 * 86_400
    webhook_prune_interval_s: float = 60.0
    webhook_prune_batch_rows: int = 2_000
    # Operator console (SPEC §12, docs/operations.md "Console"): a session ends after this
    # long without a request, and this long after login whatever happens.
    console_idle_timeout_s: int = 30 * 60
    console_session_ttl_s: int = 12 * 3600
    # The console's public origin (https://console.example.com) when it is served behind a
    # proxy: state changes must come from it, and over https its cookie is Secure. Unset:
    # the origin each request was addressed to.
    console_origin: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def attempt_deadline_s(self) -> float:
        """Hard bound on all processor calls for one attempt (retries included)."""
        return self.processor_connect_timeout_s + self.processor_timeout_s + 2.0

    @property
    def in_flight_grace_s(self) -> float:
        """How long a pending attempt belongs to the request that made it: past this, no
        call for it can still be running, and the reconciler takes over."""
        return self.attempt_deadline_s + 2.0

    @property
    def not_found_fail_after_s(self) -> float:
        """A reference the processor has never seen is failed only after this — never
        while the request that made it could still be calling."""
        return max(self.reconcile_not_found_after_s, self.in_flight_grace_s)

    @property
    def resolved_database_url(self) -> str:
        """The configured URL, or the data folder's SQLite file (the storage package picks the driver)."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'paygate.db').resolve()}"

    @property
    def resolved_session_url(self) -> str | None:
        """The session URL, if one is set (None: the database URL serves sessions too)."""
        return self.database_session_url or None

    @property
    def resolved_archive_dir(self) -> Path:
        return self.archive_dir or self.data_dir / "archive"

    @property
    def master_key_path(self) -> Path:
        return self.data_dir / "master.key"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Each setting from ``PAYGATE_<NAME>`` (its name in capitals; see _ENV_NAMES), read
        as the type of its default; an unset variable keeps the default."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            variable = _ENV_NAMES.get(f.name, "PAYGATE_" + f.name.upper())
            raw = env.get(variable)
            if raw is not None and f.name not in _NOT_FROM_ENV:
                try:
                    values[f.name] = _parse(f.name, raw, f.default)
                except ValueError:  # float("x"): a message that names neither the variable nor the rule
                    raise ValueError(f"{variable}: {_NUMBER_RULES[type(f.default)]}") from None
                if f.name in _MORE_THAN_ZERO and not values[f.name]:
                    raise ValueError(f"{variable}: must be more than 0")
                if (problem := _under_its_minimum(f.name, values[f.name])) is not None:
                    raise ValueError(f"{variable}: {problem}")
                if (problem := _past_its_maximum(f.name, values[f.name])) is not None:
                    raise ValueError(f"{variable}: {problem}")
        for name, (variable, schemes, example) in _URLS.items():
            if values.get(name) and (problem := _url_problem(values[name], schemes)):
                raise ValueError(f"{variable}: {problem}: write one like {example}")
        for name, (variable, pattern, rule) in _NAMES.items():
            if values.get(name) and not pattern.fullmatch(values[name]):
                raise ValueError(f"{variable}: {rule}")
        if values.get("fault_point") and (problem := unknown_point(values["fault_point"])):
            raise ValueError(f"PAYGATE_FAULT_POINT: {problem}")
        if values.get("database_url") and (problem := database_url_problem(values["database_url"])):
            raise ValueError(f"PAYGATE_DATABASE_URL: {problem}")
        if values.get("database_session_url") and (problem := session_url_problem(
                values["database_session_url"], values.get("database_url", ""))):
            raise ValueError(f"PAYGATE_DATABASE_SESSION_URL: {problem}")
        return cls(**values, extra={k: v for k, v in env.items() if k.startswith("PAYGATE_")})


# The variables not named PAYGATE_ + the setting's name, and the settings no variable sets.
_ENV_NAMES = {"relay_enabled": "PAYGATE_RELAY"}
_NOT_FROM_ENV = frozenset({"idempotency_lock_timeout_s", "max_body_bytes", "extra"})


# Every numeric setting is a size, a count or a duration: none is negative, none infinite.
_NUMBER_RULES = {int: "must be a whole number, 0 or more", float: "must be a number of 0 or more",
                 tuple: "must be numbers of 0 or more, separated by commas"}


# Where 0 means nothing that works: no connection or delivery at all, an attempt that times
# out before it starts, a batch of nothing read for ever, a poll that spins a core. Not the
# history's or the webhooks' prune interval: 0 is "never" (the gateway does not prune;
# `paygate history prune`, `paygate webhooks prune`).
_MORE_THAN_ZERO = frozenset({
    "db_pool_size", "processor_connect_timeout_s", "processor_timeout_s", "webhook_timeout_s",
    "webhook_max_concurrency", "webhook_endpoint_concurrency", "relay_batch_size",
    "archive_segment_max_changes", "history_prune_batch_rows", "change_poll_interval_s",
    "relay_poll_interval_s", "relay_lease_retry_s", "webhook_poll_interval_s", "reconcile_sweep_interval_s",
    "vault_purge_interval_s", "metrics_db_refresh_s", "webhook_prune_batch_rows",
})


# Floors under which a value parses but makes no sense. The contract's: below them a
# merchant's client breaks (SPEC §3: an idempotency key is kept at least 24 h, so a retry
# hours later still finds its answer instead of paying twice). And ones no deployment goes
# under: a schedule step of 0 (each step, the last of the reconciler's repeating) is a loop
# with no pause against the processor or the merchant — 0.05 s, not 1 s, because the test
# suite runs its schedules that fast (tests/e2e/conftest.py, the console's browser test); a
# console session of 0 ends as it begins; a timestamp tolerance of 0 refuses every request
# not signed in the server's own second.
_AT_LEAST: dict[str, tuple[float, str]] = {
    "idempotency_ttl_s": (24 * 3600, "idempotency keys are kept at least 24 h"),
    "reconcile_schedule_s": (0.05, "a step of 0 asks the processor again with no pause"),
    "webhook_retry_schedule_s": (0.05, "a step of 0 calls the merchant again with no pause"),
    "console_session_ttl_s": (60, "a session of 0 ends as soon as it begins"),
    "console_idle_timeout_s": (60, "a session of 0 ends as soon as it begins"),
    "timestamp_tolerance_s": (1, "0 refuses every request not signed in the server's own second"),
    # A failed delivery must outlive a weekend to be replayed once the merchant mended their receiver.
    "webhook_retention_s": (3 * 86_400, "a failed delivery must stay long enough to be replayed"),
}


def _under_its_minimum(name: str, value: object) -> str | None:
    """Why ``value`` (every step of a schedule) is under its setting's floor, else None."""
    if name not in _AT_LEAST:
        return None
    floor, why = _AT_LEAST[name]
    if isinstance(value, tuple):
        return f"every step must be at least {floor:g} ({why})" if any(n < floor for n in value) else None
    assert isinstance(value, int | float)
    return f"must be at least {floor:g} ({why})" if value < floor else None


# The URLs read by a part that starts later — the processor's connector and the broker's
# client in `paygate serve`'s start-up (a traceback from every worker), the relay's first
# connection — checked here, so that each is one line naming its variable. The schemes: the
# connectors' (processing/connectors: http(s) is the simulator's protocol, <name>+http(s)
# or <name>:// a connector module's), NATS's, S3's.
_URLS: dict[str, tuple[str, re.Pattern[str], str]] = {
    "processor_url": ("PAYGATE_PROCESSOR_URL", re.compile(r"(?:[a-z][a-z0-9_]*\+)?https?|[a-z][a-z0-9_]*"),
                      "http://127.0.0.1:8081"),
    "broker_url": ("PAYGATE_BROKER_URL", re.compile(r"nats|tls"), "nats://127.0.0.1:4222"),
    "archive_s3_endpoint": ("PAYGATE_ARCHIVE_S3_ENDPOINT", re.compile(r"https?"), "http://minio:9000"),
}


# Names that become part of a URL or a signature: the S3 bucket's host name (AWS's virtual
# host), the region in every request's signing scope. Once, PAYGATE_ARCHIVE_S3_REGION=²
# was httpx's InvalidURL as a traceback from `paygate audit verify` and the relay.
_NAMES: dict[str, tuple[str, re.Pattern[str], str]] = {
    "archive_s3_bucket": ("PAYGATE_ARCHIVE_S3_BUCKET", re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}"),
                          "must be a bucket name: letters, digits, '.', '-' and '_'"),
    "archive_s3_region": ("PAYGATE_ARCHIVE_S3_REGION", re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"),
                          "must be a region name, like us-east-1"),
}


def _url_problem(url: str, schemes: re.Pattern[str]) -> str | None:
    """Why ``url`` is no URL of one of ``schemes`` with a host (and a port that is a port),
    in words that never repeat it (it may hold a password); None if it can be tried."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (ValueError for a port that is no number or past 65535)
    except ValueError:
        return "not a URL"
    if not schemes.fullmatch(parts.scheme.lower()):
        return "not a URL with a scheme paygate supports"
    if not parts.hostname or not url.isprintable() or any(c.isspace() for c in url):
        return "not a URL with a host"
    return None


# The largest number each setting takes. Past them a duration overflows what it is turned
# into — microseconds in the database (PAYGATE_AUTHORIZATION_TTL_S=1e300 was an OverflowError
# traceback in the background work, every sweep), a datetime, PostgreSQL's milliseconds —
# and a count reaches SQL as a LIMIT SQLite cannot hold (PAYGATE_RELAY_BATCH_SIZE=10**29, the
# same). Ten years of seconds and a million of anything are past every sane value: a typo.
_MAX_SECONDS = 10 * 365 * 86_400
_MAX_COUNT = 1_000_000
_AT_MOST: dict[str, tuple[int, str]] = {
    # idle_in_transaction_session_timeout is a 32-bit count of milliseconds: past it every
    # connection was refused and `paygate serve` died with a 167-line traceback.
    "db_idle_in_transaction_timeout_s": (2_147_483, "PostgreSQL's limit, about 24 days"),
    # SPEC §3 accepts a timestamp within ±300 s of the server's clock: no more.
    "timestamp_tolerance_s": (300, "SPEC §3: ±300 s"),
    # A larger RSA key takes minutes to make, at start-up on a new database.
    "card_key_bits": (8192, "a multiple of 8 from 2048"),
}


def _past_its_maximum(name: str, value: object) -> str | None:
    """Why ``value`` is too large (or, for the card key's size, not a size), else None."""
    if name == "card_key_bits":
        assert isinstance(value, int)
        if not MIN_KEY_BITS <= value <= _AT_MOST[name][0] or value % 8:
            return f"must be a multiple of 8 from {MIN_KEY_BITS} to {_AT_MOST[name][0]}"
        return None
    numbers = value if isinstance(value, tuple) else (value,)
    if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers):
        return None
    top, why = _AT_MOST.get(name) or ((_MAX_SECONDS, "ten years") if name.endswith("_s") else (_MAX_COUNT, ""))
    if any(n > top for n in numbers):
        return f"must be at most {top:,}" + (f" ({why})" if why else "")
    return None


# A number as an operator types it: ASCII digits (float() and int() also take "٣" as 3,
# "1_0" as 10 and " 7 " as 7), a decimal point and an exponent where the default is a float.
_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _number(kind: type[int] | type[float], raw: str) -> int | float:
    if not (_WHOLE if kind is int else _DECIMAL).fullmatch(raw) or len(raw) > 40:
        raise ValueError(raw)
    value = kind(raw)
    if not 0 <= value < math.inf:  # also refuses nan
        raise ValueError(raw)
    return value


def _parse(name: str, raw: str, default: object) -> object:
    """One variable's value. Empty means the default, except for a number (refused: a
    typo should not pass for the default) and for the S3 prefix (empty: the bucket's root)."""
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"} if raw else default
    if isinstance(default, int | float):
        return _number(type(default), raw)
    if isinstance(default, tuple):
        return tuple(_number(float, x) for x in raw.split(",")) if raw else default
    if name == "archive_dir":
        return Path(raw) if raw else None
    if isinstance(default, Path):
        return Path(raw or default)
    return raw if name == "archive_s3_prefix" else raw or default
