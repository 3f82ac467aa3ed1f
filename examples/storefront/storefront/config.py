"""The storefront's settings, from ``STOREFRONT_*`` environment variables."""
from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["StorefrontConfig"]


def _load_or_create_secret(path: Path) -> str:
    """A random key kept in the data dir (mode 0600), so cookies survive restarts: its hex."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key.hex())
    return key.hex()


def _secret_key(text: str, where: str) -> bytes:
    """The cookie key written in hex: at least 16 bytes (CookieSigner's floor). Once, any
    other text was a start-up traceback (fromhex's ValueError, or the signer's)."""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise SystemExit(f"storefront: {where}: the cookie key must be at least 16 bytes written in hex "
                         "(32 hex digits or more)")
    return key


def _is_http_url(url: str) -> bool:
    """``http(s)://host[:port][/path]`` (once, "nan" or "http://[::1" ended the shop's
    start-up in a traceback from the SDK's client)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (ValueError: a port that is no number or past 65535)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and url.isprintable() and " " not in url


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
        if data_dir.exists() and not data_dir.is_dir():
            raise SystemExit(f"storefront: STOREFRONT_DATA_DIR: {data_dir} is not a folder")
        for name in ("STOREFRONT_GATEWAY_URL", "STOREFRONT_GATEWAY_PUBLIC_URL"):
            if env.get(name) and not _is_http_url(env[name]):
                raise SystemExit(f"storefront: {name}: not an http(s)://host[:port] URL")
        secret_hex = env.get("STOREFRONT_SECRET_KEY")
        if secret_hex:
            secret = _secret_key(secret_hex, "STOREFRONT_SECRET_KEY")
        else:
            path = data_dir / "secret.key"
            try:
                secret = _secret_key(_load_or_create_secret(path), str(path))
            except OSError as exc:
                raise SystemExit(f"storefront: cannot keep the cookie key in {path} "
                                 f"({exc.strerror or type(exc).__name__}): check STOREFRONT_DATA_DIR") from None
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
