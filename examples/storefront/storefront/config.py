"""The storefront's settings, from ``STOREFRONT_*`` environment variables."""
from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["StorefrontConfig"]


def _load_or_create_secret(path: Path) -> bytes:
    """A random key kept in the data dir (mode 0600), so cookies survive restarts."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as f:
        f.write(key.hex())
    return key


@dataclass(frozen=True)
class StorefrontConfig:
    api_key: str
    signing_secret: str
    gateway_url: str = "http://127.0.0.1:8080"
    #: Where browsers load checkout.js and the iframe from (defaults to gateway_url).
    gateway_public_url: str | None = None
    webhook_secret: str | None = None
    data_dir: Path = Path("storefront-data")
    admin_password: str = ""
    secret_key: bytes = field(default=b"", repr=False)
    shop_name: str = "Tidewater Coffee"
    #: Longest a browser's status request is held while a payment is processing.
    status_wait_s: int = 20

    def __repr__(self) -> str:  # no secrets in logs
        return (f"StorefrontConfig(gateway_url={self.gateway_url!r}, api_key={self.api_key!r}, "
                f"data_dir={str(self.data_dir)!r})")

    @property
    def browser_gateway_url(self) -> str:
        return (self.gateway_public_url or self.gateway_url).rstrip("/")

    @property
    def database_path(self) -> Path:
        return self.data_dir / "storefront.db"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StorefrontConfig:
        env = os.environ if env is None else env
        missing = [name for name in ("STOREFRONT_API_KEY", "STOREFRONT_SIGNING_SECRET") if not env.get(name)]
        if missing:
            raise SystemExit(f"storefront: set {' and '.join(missing)} (`paygate demo` does it for you)")
        data_dir = Path(env.get("STOREFRONT_DATA_DIR") or "storefront-data")
        secret_hex = env.get("STOREFRONT_SECRET_KEY")
        secret = bytes.fromhex(secret_hex) if secret_hex else _load_or_create_secret(data_dir / "secret.key")
        password = env.get("STOREFRONT_ADMIN_PASSWORD") or ""
        if not password:
            password = secrets.token_urlsafe(9)
            print(f"storefront: STOREFRONT_ADMIN_PASSWORD is not set; the admin password is {password}",
                  flush=True)
        return cls(
            api_key=env["STOREFRONT_API_KEY"],
            signing_secret=env["STOREFRONT_SIGNING_SECRET"],
            gateway_url=(env.get("STOREFRONT_GATEWAY_URL") or cls.gateway_url).rstrip("/"),
            gateway_public_url=env.get("STOREFRONT_GATEWAY_PUBLIC_URL") or None,
            webhook_secret=env.get("STOREFRONT_WEBHOOK_SECRET") or None,
            data_dir=data_dir,
            admin_password=password,
            secret_key=secret,
        )
