"""Accounts: who may sign in, with which role, for which facility; passwords kept only as argon2 hashes.

Accounts live in the embedded store (``store.py``), so the server and the ``hoichan user`` CLI share them and a
change made by one is seen by the other at once. An operator may also list accounts in a YAML file
(``auth.accounts_file``): it is validated entry by entry and merged into the store at every start, and it stays
authoritative for the accounts it lists (the CLI refuses to change those; edit the file instead).
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import argon2
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from .config import Config, ConfigError
from .schemas import DisplayName
from .store import connect, transaction

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "ROLES",
    "Account",
    "AccountEntry",
    "AccountFields",
    "AccountStore",
    "Role",
    "describe_error",
    "file_usernames",
    "hash_password",
    "load_accounts_file",
    "open_accounts",
]

Role = Literal["doctor", "technician", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)


def _folded(value: Any) -> Any:
    """Identifiers are compared lower-case and trimmed: ``BS.Pao`` and ``bs.pao`` are one account."""
    return value.strip().lower() if isinstance(value, str) else value


Username = Annotated[str, BeforeValidator(_folded), StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
Slug = Annotated[str, BeforeValidator(_folded), StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
Password = Annotated[str, StringConstraints(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)]

_hasher = argon2.PasswordHasher()  # argon2id with the library's RFC 9106 defaults


@dataclass(frozen=True)
class Account:
    username: str
    display_name: str
    role: Role
    facility_id: str
    specialties: tuple[str, ...] = ()
    token_version: int = 0
    """Bumped when the password changes: tokens carry it, so older tokens stop working."""

    def public(self) -> dict[str, Any]:
        """What the API says about an account (never the hash or the token version)."""
        return {
            "username": self.username,
            "displayName": self.display_name,
            "role": self.role,
            "facility": self.facility_id,
            "specialties": list(self.specialties),
        }


class AccountFields(BaseModel):
    """An account as an operator writes it (file or CLI): checked the same way wherever it comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: Username
    display_name: DisplayName
    role: Role
    facility: Slug
    specialties: tuple[Slug, ...] = ()

    @model_validator(mode="after")
    def _specialties_are_for_doctors(self) -> AccountFields:
        if self.specialties and self.role != "doctor":
            raise ValueError(f"only doctors have specialties (role is {self.role})")
        return self

    def account(self) -> Account:
        specialties = tuple(dict.fromkeys(self.specialties))  # listed once each, in the order given
        return Account(self.username, self.display_name, self.role, self.facility, specialties)


class AccountEntry(AccountFields):
    """One entry of the accounts file: the account plus exactly one of a clear ``password`` or a ``password_hash``."""

    password: Password | None = None
    password_hash: str | None = None

    @field_validator("password_hash")
    @classmethod
    def _argon2_hash(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                argon2.extract_parameters(value)
            except argon2.exceptions.InvalidHashError:
                raise ValueError("must be an argon2 hash ($argon2id$...)") from None
        return value

    @model_validator(mode="after")
    def _one_password(self) -> AccountEntry:
        if (self.password is None) == (self.password_hash is None):
            raise ValueError("give exactly one of password or password_hash")
        return self


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the username is unknown, so a wrong username takes as long as a wrong password."""
    return hash_password("not a password of anyone")


def describe_error(error: ValidationError) -> str:
    """The first problem of a validation error as ``field: what is wrong``."""
    item = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in item["loc"])
    message = str(item["msg"]).removeprefix("Value error, ")
    if item["type"] == "string_pattern_mismatch":
        allowed = "'.', '-' or '_'" if item["loc"][-1] == "username" else "'-' or '_'"
        message = f"use letters without accents, digits, {allowed} (no spaces)"
    return f"{where}: {message}" if where else message


_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    username TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    facility_id TEXT NOT NULL,
    specialties TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    token_version INTEGER NOT NULL DEFAULT 0
)
"""


class AccountStore:
    """Accounts in the embedded store. Every read goes to the database, so the CLI's changes apply at once."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.execute(_SCHEMA)

    def get(self, username: str) -> Account | None:
        row = self._db.execute("SELECT * FROM accounts WHERE username = ?", (_key(username),)).fetchone()
        return None if row is None else _account(row)

    def all(self) -> list[Account]:
        return [_account(row) for row in self._db.execute("SELECT * FROM accounts ORDER BY username")]

    def add(self, account: Account, password_hash: str) -> bool:
        """Create the account; False if the username is taken."""
        try:
            self._db.execute(
                "INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, 0)",
                (*_columns(account), password_hash),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def set_password(self, username: str, password_hash: str) -> bool:
        """Replace the password and void every token issued before; False if there is no such account."""
        cursor = self._db.execute(
            "UPDATE accounts SET password_hash = ?, token_version = token_version + 1 WHERE username = ?",
            (password_hash, _key(username)),
        )
        return cursor.rowcount == 1

    def remove(self, username: str) -> bool:
        return self._db.execute("DELETE FROM accounts WHERE username = ?", (_key(username),)).rowcount == 1

    async def authenticate(self, username: str, password: str) -> Account | None:
        """The account if the password is right, else None (unknown user and wrong password look the same).

        The argon2 check (~0.1 s of CPU) runs in a thread so the event loop keeps relaying media meanwhile.
        """
        row = self._db.execute("SELECT * FROM accounts WHERE username = ?", (_key(username),)).fetchone()
        password_hash = _dummy_hash() if row is None else row["password_hash"]
        ok = await asyncio.to_thread(_verify, password_hash, password)
        return _account(row) if ok and row is not None else None

    def merge(self, entries: Sequence[AccountEntry]) -> None:
        """Make the store hold ``entries`` as written (other accounts are left alone), in one transaction.

        A password that already matches keeps its hash and token version, so a restart signs nobody out.
        """
        current = {row["username"]: row["password_hash"] for row in self._db.execute("SELECT * FROM accounts")}
        updates: list[tuple[Account, str, bool]] = []
        for entry in entries:
            stored = current.get(entry.username)
            if entry.password_hash is not None:
                new_hash, changed = entry.password_hash, entry.password_hash != stored
            elif stored is not None and entry.password is not None and _verify(stored, entry.password):
                new_hash, changed = stored, False
            else:
                new_hash, changed = hash_password(entry.password or ""), True
            updates.append((entry.account(), new_hash, changed))
        with transaction(self._db) as db:
            for account, new_hash, changed in updates:
                db.execute(
                    """INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, 0)
                       ON CONFLICT (username) DO UPDATE SET display_name = excluded.display_name,
                           role = excluded.role, facility_id = excluded.facility_id,
                           specialties = excluded.specialties, password_hash = excluded.password_hash,
                           token_version = token_version + ?""",
                    (*_columns(account), new_hash, int(changed)),
                )


def _key(username: str) -> str:
    return str(_folded(username))


def _columns(account: Account) -> tuple[str, str, str, str, str]:
    return (
        account.username,
        account.display_name,
        account.role,
        account.facility_id,
        json.dumps(list(account.specialties)),
    )


def _account(row: sqlite3.Row) -> Account:
    return Account(
        username=row["username"],
        display_name=row["display_name"],
        role=row["role"],
        facility_id=row["facility_id"],
        specialties=tuple(json.loads(row["specialties"])),
        token_version=row["token_version"],
    )


def load_accounts_file(path: Path) -> list[AccountEntry]:
    """Read and check the accounts file; ``ConfigError`` naming the entry (number and username) at the first problem."""
    key = "auth.accounts_file"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(key, f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(key, f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise ConfigError(key, f"{path} must be a list of accounts (- username: ...)")
    entries: list[AccountEntry] = []
    seen: set[str] = set()
    for number, item in enumerate(data, start=1):
        name = item.get("username") if isinstance(item, dict) else None
        where = f"{path}: entry {number}" + (f" ({name})" if isinstance(name, str) else "")
        try:
            entry = AccountEntry.model_validate(item)
        except ValidationError as exc:
            raise ConfigError(key, f"{where}: {describe_error(exc)}") from None
        if entry.username in seen:
            raise ConfigError(key, f"{where}: username {entry.username} is listed twice")
        seen.add(entry.username)
        entries.append(entry)
    return entries


def open_accounts(config: Config, vet: Callable[[Account], list[str]] | None = None) -> AccountStore:
    """The account store of this configuration, with the accounts file (if any) merged in.

    ``vet`` names what is wrong with an account beyond its own fields (a facility the directory does not list);
    any problem in the file refuses the whole file before the store changes (``ConfigError``).
    """
    store = AccountStore(connect(config.store.path))
    if config.auth.accounts_file is not None:
        entries = load_accounts_file(config.auth.accounts_file)
        problems = [problem for entry in entries for problem in (vet(entry.account()) if vet else [])]
        if problems:
            raise ConfigError("auth.accounts_file", f"{config.auth.accounts_file}: {problems[0]}")
        store.merge(entries)
    return store


def file_usernames(config: Config) -> set[str]:
    """Usernames the accounts file defines (the CLI leaves those to the file)."""
    if config.auth.accounts_file is None:
        return set()
    return {entry.username for entry in load_accounts_file(config.auth.accounts_file)}
