"""Configuration from ``PAYGATE_*`` environment variables (SPEC §9), read once at start-up."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from paygate_server.cards.keys import DEFAULT_KEY_BITS

__all__ = ["Settings"]


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("paygate-data")
    database_url: str = ""
    processor_url: str = "http://127.0.0.1:8081"
    master_key: str | None = None
    # Connections kept per process (PostgreSQL); a new one costs the server a fork.
    db_pool_size: int = 20
    # How long a request waits for a free pooled connection before it is answered 503
    # service_unavailable with Retry-After (SQLAlchemy's default, 30 s, outlasts clients).
    db_pool_timeout_s: float = 10.0
    # The gateway's own public origin (for checkout.js and the iframe); derived from the
    # request when unset.
    public_url: str | None = None
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
    card_key_bits: int = DEFAULT_KEY_BITS  # RSA size of new checkout keys (cards/keys.py)
    # Test seam for crash tests: the process SIGKILLs itself at this named point.
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
    def resolved_archive_dir(self) -> Path:
        return self.archive_dir or self.data_dir / "archive"

    @property
    def master_key_path(self) -> Path:
        return self.data_dir / "master.key"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        d = cls()
        return cls(
            data_dir=Path(env.get("PAYGATE_DATA_DIR") or d.data_dir),
            database_url=env.get("PAYGATE_DATABASE_URL", ""),
            processor_url=env.get("PAYGATE_PROCESSOR_URL") or d.processor_url,
            master_key=env.get("PAYGATE_MASTER_KEY") or None,
            db_pool_size=int(env.get("PAYGATE_DB_POOL_SIZE", d.db_pool_size)),
            db_pool_timeout_s=float(env.get("PAYGATE_DB_POOL_TIMEOUT_S", d.db_pool_timeout_s)),
            public_url=env.get("PAYGATE_PUBLIC_URL") or None,
            timestamp_tolerance_s=int(env.get("PAYGATE_TIMESTAMP_TOLERANCE_S", d.timestamp_tolerance_s)),
            key_cache_ttl_s=float(env.get("PAYGATE_KEY_CACHE_TTL_S", d.key_cache_ttl_s)),
            idempotency_ttl_s=int(env.get("PAYGATE_IDEMPOTENCY_TTL_S", d.idempotency_ttl_s)),
            processor_timeout_s=float(env.get("PAYGATE_PROCESSOR_TIMEOUT_S", d.processor_timeout_s)),
            processor_connect_timeout_s=float(env.get("PAYGATE_PROCESSOR_CONNECT_TIMEOUT_S", d.processor_connect_timeout_s)),
            process_wait_budget_s=float(env.get("PAYGATE_PROCESS_WAIT_BUDGET_S", d.process_wait_budget_s)),
            reconcile_schedule_s=tuple(float(x) for x in env["PAYGATE_RECONCILE_SCHEDULE_S"].split(","))
            if env.get("PAYGATE_RECONCILE_SCHEDULE_S") else d.reconcile_schedule_s,
            reconcile_not_found_after_s=float(env.get("PAYGATE_RECONCILE_NOT_FOUND_AFTER_S", d.reconcile_not_found_after_s)),
            reconcile_sweep_interval_s=float(env.get("PAYGATE_RECONCILE_SWEEP_INTERVAL_S", d.reconcile_sweep_interval_s)),
            card_key_bits=int(env.get("PAYGATE_CARD_KEY_BITS", d.card_key_bits)),
            fault_point=env.get("PAYGATE_FAULT_POINT") or None,
            run_background=_bool(env.get("PAYGATE_RUN_BACKGROUND"), d.run_background),
            change_poll_interval_s=float(env.get("PAYGATE_CHANGE_POLL_INTERVAL_S", d.change_poll_interval_s)),
            webhook_allow_private=_bool(env.get("PAYGATE_WEBHOOK_ALLOW_PRIVATE")),
            relay_enabled=_bool(env.get("PAYGATE_RELAY"), d.relay_enabled),
            relay_batch_size=int(env.get("PAYGATE_RELAY_BATCH_SIZE", d.relay_batch_size)),
            relay_poll_interval_s=float(env.get("PAYGATE_RELAY_POLL_INTERVAL_S", d.relay_poll_interval_s)),
            relay_lease_retry_s=float(env.get("PAYGATE_RELAY_LEASE_RETRY_S", d.relay_lease_retry_s)),
            archive_dir=Path(env["PAYGATE_ARCHIVE_DIR"]) if env.get("PAYGATE_ARCHIVE_DIR") else None,
            archive_segment_max_changes=int(env.get("PAYGATE_ARCHIVE_SEGMENT_MAX_CHANGES",
                                                    d.archive_segment_max_changes)),
            archive_linger_s=float(env.get("PAYGATE_ARCHIVE_LINGER_S", d.archive_linger_s)),
            archive_s3_bucket=env.get("PAYGATE_ARCHIVE_S3_BUCKET") or None,
            archive_s3_prefix=env.get("PAYGATE_ARCHIVE_S3_PREFIX", d.archive_s3_prefix),
            archive_s3_endpoint=env.get("PAYGATE_ARCHIVE_S3_ENDPOINT") or None,
            archive_s3_region=env.get("PAYGATE_ARCHIVE_S3_REGION") or d.archive_s3_region,
            archive_s3_access_key=env.get("PAYGATE_ARCHIVE_S3_ACCESS_KEY") or None,
            archive_s3_secret_key=env.get("PAYGATE_ARCHIVE_S3_SECRET_KEY") or None,
            broker_url=env.get("PAYGATE_BROKER_URL") or None,
            broker_stream=env.get("PAYGATE_BROKER_STREAM") or d.broker_stream,
            broker_subject_prefix=env.get("PAYGATE_BROKER_SUBJECT_PREFIX") or d.broker_subject_prefix,
            webhook_retry_schedule_s=tuple(float(x) for x in env["PAYGATE_WEBHOOK_RETRY_SCHEDULE_S"].split(","))
            if env.get("PAYGATE_WEBHOOK_RETRY_SCHEDULE_S") else d.webhook_retry_schedule_s,
            webhook_timeout_s=float(env.get("PAYGATE_WEBHOOK_TIMEOUT_S", d.webhook_timeout_s)),
            webhook_max_concurrency=int(env.get("PAYGATE_WEBHOOK_MAX_CONCURRENCY", d.webhook_max_concurrency)),
            webhook_endpoint_concurrency=int(env.get("PAYGATE_WEBHOOK_ENDPOINT_CONCURRENCY",
                                                     d.webhook_endpoint_concurrency)),
            webhook_poll_interval_s=float(env.get("PAYGATE_WEBHOOK_POLL_INTERVAL_S", d.webhook_poll_interval_s)),
            token_ttl_s=float(env.get("PAYGATE_TOKEN_TTL_S", d.token_ttl_s)),
            vault_purge_interval_s=float(env.get("PAYGATE_VAULT_PURGE_INTERVAL_S", d.vault_purge_interval_s)),
            metrics_token=env.get("PAYGATE_METRICS_TOKEN") or None,
            metrics_db_refresh_s=float(env.get("PAYGATE_METRICS_DB_REFRESH_S", d.metrics_db_refresh_s)),
            extra={k: v for k, v in env.items() if k.startswith("PAYGATE_")},
        )
