"""A TLS-terminating TCP proxy on loopback, as an operator puts in front of the console:
it accepts TLS (a self-signed certificate for ``name``, made here) and forwards the
decrypted bytes, untouched, to a plain-http upstream — so the upstream sees the browser's
own ``Host`` and ``Origin``, as behind nginx with ``proxy_set_header Host $host``.

Threads, not asyncio: the browser tests drive Playwright's sync API on the main thread.
"""
from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["TlsProxy"]


def _self_signed(name: str, folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "proxy-cert.pem", folder / "proxy-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class TlsProxy:
    """Listens on 127.0.0.1 (``port``, picked by the OS at construction, so the upstream can
    be told its public origin before it starts); ``start(upstream_port)`` begins forwarding."""

    def __init__(self, name: str, folder: Path) -> None:
        cert, key = _self_signed(name, folder)
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(cert, key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._upstream_port: int | None = None
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()

    def start(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._spawn(self._accept_loop)

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for end in list(self._open):  # connections the browser kept alive
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        for end in self._open:
            end.close()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]  # a callable
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        assert self._upstream_port is not None
        try:
            secure = self._context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):  # a client that gave up on our certificate
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self._upstream_port))
        self._open.update((secure, upstream))

        def pipe(source: socket.socket, target: socket.socket) -> None:
            with contextlib.suppress(OSError, ssl.SSLError):
                while chunk := source.recv(65536):
                    target.sendall(chunk)
            # Either side ending ends the connection (no half-closed HTTP here): the other
            # direction's recv returns, and both sockets are closed once.
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

        self._spawn(pipe, upstream, secure)
        pipe(secure, upstream)
