"""Console accounts: creating and disabling operators, and checking a password at login.

Passwords are kept as Argon2id hashes (``argon2.PasswordHasher``, its RFC 9106 default
parameters); a hash made under older parameters is replaced at the next good login.
Hashing runs in a worker thread (tens of milliseconds of CPU and 64 MiB each) so the
event loop keeps serving other requests, at most ``HASHING_AT_ONCE`` at a time per process,
so a flood of login attempts queues instead of taking the machine's memory.

Lockout (SPEC §12): ten failed logins for one account within 15 minutes lock it for 15
minutes from the tenth. While locked, even the right password is refused and nothing more
is recorded (so the lock ends when it said it would). A request reads the lock only once
it holds a hashing slot, so concurrent guesses queued in a burst are refused from the tenth
failure on, as sequential ones are. A good login does not erase the failures — they stay
as the audit — but only failures after the last good login count.
Every refusal reads the same (no hint whether the email exists, is locked or disabled),
and an unknown or disabled email is verified against a dummy hash so it costs the same work.

Exceptions::

    AccountError        a refused request to create or disable an account (one line)
"""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from functools import cached_property

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from paygate_server.cards.pan import contains_card_number
from paygate_server.clock import now_us
from paygate_server.console.actions import record_action_in
from paygate_server.console.roles import ROLES, is_role
from paygate_server.ids import new_id
from paygate_server.storage import Database
from paygate_server.storage.operators import (
    OperatorRow,
    disable_operator,
    find_operator_by_email,
    insert_operator,
    last_login_at,
    list_operators,
    recent_failures,
    record_failure,
    set_password_hash,
)

__all__ = ["AccountError", "Accounts", "Actor", "LOCKOUT_FAILURES", "LOCKOUT_WINDOW_S", "LOGIN_REFUSED", "MIN_PASSWORD",
           "normalize_email"]

MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # Argon2 takes any length; a bound keeps a hostile body from costing more
LOCKOUT_FAILURES = 10
LOCKOUT_WINDOW_S = 15 * 60  # failures counted within it; also how long the lock lasts
HASHING_AT_ONCE = 2
LOGIN_REFUSED = "Wrong email or password, or the account is locked for a while after too many failed attempts."
_US = 1_000_000
# One address, no spaces, a dot in the domain: enough to catch a typo; delivery is not our concern.
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+", re.ASCII)


class AccountError(Exception):
    """A refused account request: the message is one line for the operator."""


def normalize_email(raw: str) -> str:
    """The stored form (lower-cased, trimmed); AccountError if it is not an address."""
    email = raw.strip().lower()
    if contains_card_number(email):
        # Shown in every console page's header and on Activity (SPEC §12: never a card number).
        raise AccountError("an operator's email must not hold a card number")
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise AccountError(f"not an email address: {raw[:80]!r}")
    return email


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"the password must be at most {MAX_PASSWORD} characters")


@dataclass(frozen=True, slots=True)
class Actor:
    """The operator who creates or disables an account from the console: the change and
    its ``operator_actions`` record commit in one transaction, or neither does (a record
    written afterwards could be lost in between, leaving an account nobody made)."""
    operator_id: str
    remote_addr: str | None


@dataclass(frozen=True, slots=True)
class LoginResult:
    operator: OperatorRow | None  # None: refused (LOGIN_REFUSED, whatever the reason)
    locked: bool = False  # for the log and tests only; never shown differently


class Accounts:
    """Operators' accounts on ``db``; ``hasher`` sets the Argon2 parameters (tests pass
    cheap ones)."""

    def __init__(self, db: Database, hasher: PasswordHasher | None = None) -> None:
        self.db = db
        self.hasher = hasher or PasswordHasher()
        self._hashing = asyncio.Semaphore(HASHING_AT_ONCE)

    @cached_property
    def _dummy_hash(self) -> str:
        """A hash nobody's password matches, under the same parameters: the work done for
        an unknown email."""
        return self.hasher.hash(new_id("dummy"))

    async def prepare(self) -> None:
        """Make the dummy hash now (at start-up), so the first unknown email does not take
        one hashing longer than the others."""
        await asyncio.to_thread(lambda: self._dummy_hash)

    async def hash(self, password: str) -> str:
        async with self._hashing:
            return await asyncio.to_thread(self.hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        async with self._hashing:
            return await self._verify_now(password_hash, password)

    async def _verify_now(self, password_hash: str, password: str) -> bool:
        """Verify in a worker thread; the caller holds a hashing slot."""
        try:
            return await asyncio.to_thread(self.hasher.verify, password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def create(self, email: str, role: str, password: str, by: Actor | None = None) -> OperatorRow:
        """The new account; ``by``: record it as that operator's action (the command line
        has no operator to record)."""
        email = normalize_email(email)
        if not is_role(role):
            raise AccountError(f"no role {role[:40]!r}: one of {', '.join(ROLES)}")
        check_password(password)
        row = OperatorRow(new_id("op"), email, role, await self.hash(password), now_us(), None)
        async with self.db.write() as conn:
            if await find_operator_by_email(conn, email) is None:
                created = await insert_operator(conn, operator_id=row.id, email=email, role=role,
                                                password_hash=row.password_hash, now=row.created_at)
                if created and by is not None:
                    await record_action_in(conn, operator_id=by.operator_id, action="operator.create",
                                           target=row.id, detail={"email": email, "role": role},
                                           remote_addr=by.remote_addr)
            else:
                created = False
        if not created:  # taken before, or by a concurrent create (the unique email decides)
            raise AccountError(f"there is already an operator {email}")
        return row

    async def disable(self, email: str, by: Actor | None = None) -> OperatorRow:
        """Disable the account and revoke its sessions; disabling twice is not an error.
        ``by``: record it as that operator's action, as :meth:`create`."""
        email = normalize_email(email)
        async with self.db.write() as conn:
            row = await find_operator_by_email(conn, email)
            if row is None:
                raise AccountError(f"no operator {email}")
            await disable_operator(conn, row.id, now_us())
            if by is not None:
                await record_action_in(conn, operator_id=by.operator_id, action="operator.disable",
                                       target=row.id, detail={"email": row.email}, remote_addr=by.remote_addr)
            # The account as it is now (its disabledAt), not as it was read before.
            disabled = await find_operator_by_email(conn, email)
        return disabled or row

    async def list(self) -> list[OperatorRow]:
        async with self.db.read() as conn:
            return await list_operators(conn)

    async def find(self, email: str) -> OperatorRow | None:
        async with self.db.read() as conn:
            return await find_operator_by_email(conn, email)

    async def locked_until(self, operator_id: str, now: int) -> int | None:
        """The end of the account's lock (µs), None if it is not locked at ``now``."""
        async with self.db.read() as conn:
            since = await last_login_at(conn, operator_id)
            times = await recent_failures(conn, operator_id, after=since or 0, limit=LOCKOUT_FAILURES)
        window = LOCKOUT_WINDOW_S * _US
        if len(times) < LOCKOUT_FAILURES or times[0] - times[-1] > window:
            return None
        until = times[0] + window  # failures are not recorded while locked: the newest is the tenth
        return until if now < until else None

    async def login(self, email: str, password: str, remote_addr: str | None) -> LoginResult:
        """The operator if ``password`` is theirs and the account is enabled and not locked."""
        try:
            address = normalize_email(email)
        except AccountError:
            address = ""
        row = await self.find(address) if address and len(password) <= MAX_PASSWORD else None
        if row is None or row.disabled_at is not None:
            await self._verify(self._dummy_hash, password[:MAX_PASSWORD])
            return LoginResult(None)
        # The lock is read once this request holds a hashing slot, and its failure is
        # recorded before the slot is let go: a burst of concurrent guesses, all waiting in
        # line, is cut at the tenth failure instead of each being checked on arrival.
        async with self._hashing:
            now = now_us()
            if await self.locked_until(row.id, now) is not None:
                await self._verify_now(self._dummy_hash, password)
                return LoginResult(None, locked=True)
            if not await self._verify_now(row.password_hash, password):
                async with self.db.write() as conn:
                    await record_failure(conn, row.id, now, remote_addr, forget_before=now - LOCKOUT_WINDOW_S * _US)
                return LoginResult(None)
        if self.hasher.check_needs_rehash(row.password_hash):
            async with self.db.write() as conn:
                await set_password_hash(conn, row.id, await self.hash(password))
        return LoginResult(row)
