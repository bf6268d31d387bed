"""``hoichan user add|list|passwd|remove``: accounts from the command line, on the server's own machine.

Works on the same embedded store as the server (``--config`` as for ``serve``), even while it runs: the server
reads accounts from the store on every sign-in. Accounts listed in ``auth.accounts_file`` belong to that file;
the CLI shows them but refuses to change them, since the next start would undo the change.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable

from pydantic import ValidationError

from .accounts import (
    MAX_PASSWORD_LENGTH,
    Account,
    MIN_PASSWORD_LENGTH,
    ROLES,
    AccountFields,
    AccountStore,
    describe_error,
    file_usernames,
    hash_password,
    open_accounts,
)
from .config import Config, ConfigError, load_config
from .directory import DirectoryError, account_problems, load_directory

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = commands.add_parser("user", help="manage accounts (doctors, technicians, admins)")
    actions = user.add_subparsers(dest="action", required=True)

    add = actions.add_parser("add", help="create an account")
    add.add_argument("username", help="sign-in name: lower-case letters, digits, '.', '-', '_'")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--facility", required=True, help="facility id, e.g. bv-bach-mai")
    add.add_argument("--name", required=True, help='display name, e.g. "PGS. Nguyễn Văn A"')
    add.add_argument("--specialty", action="append", default=[], help="a doctor's specialty (repeatable)")
    _password_option(add)

    actions.add_parser("list", help="list accounts (never their passwords)")

    passwd = actions.add_parser("passwd", help="set an account's password (signs it out everywhere)")
    passwd.add_argument("username")
    _password_option(passwd)

    remove = actions.add_parser("remove", help="delete an account (its sign-ins stop working at once)")
    remove.add_argument("username")

    for parser in actions.choices.values():
        parser.add_argument("--config", default=None, help="path to config.yaml (defaults are embedded)")


def _password_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line of standard input"
    )


class _Refused(Exception):
    """The command cannot be carried out; the message says why, on one line."""


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)  # ConfigError is reported by the caller
    try:
        directory = load_directory(config.directory.file)
    except DirectoryError as exc:
        raise ConfigError("directory.file", str(exc)) from None
    store = open_accounts(config, lambda account: account_problems(directory, [account]))
    try:
        if args.action == "add":
            _add(args, store, lambda account: account_problems(directory, [account]))
        elif args.action == "list":
            _list(config, store)
        elif args.action == "passwd":
            _passwd(args, config, store)
        else:
            _remove(args, config, store)
    except _Refused as exc:
        print(f"hoichan user {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def _add(args: argparse.Namespace, store: AccountStore, vet: Callable[[Account], list[str]]) -> None:
    try:
        fields = AccountFields(
            username=args.username,
            display_name=args.name,
            role=args.role,
            facility=args.facility,
            specialties=tuple(args.specialty),
        )
    except ValidationError as exc:
        raise _Refused(describe_error(exc)) from None
    if store.get(fields.username) is not None:
        raise _Refused(f"{fields.username} already exists (use `hoichan user passwd` to change its password)")
    problems = vet(fields.account())
    if problems:  # the directory (directory.file) lists every facility and specialty an account may name
        raise _Refused(problems[0].removeprefix(f"account {fields.username}: "))
    if not store.add(fields.account(), hash_password(_read_password(args.password_stdin))):
        raise _Refused(f"{fields.username} already exists")
    print(f"added {fields.role} {fields.username} ({fields.display_name}, {fields.facility})")


def _list(config: Config, store: AccountStore) -> None:
    from_file = file_usernames(config)
    rows = [("USERNAME", "ROLE", "FACILITY", "NAME", "SPECIALTIES", "SOURCE")]
    for account in store.all():
        source = "file" if account.username in from_file else "store"
        rows.append(
            (
                account.username,
                account.role,
                account.facility_id,
                account.display_name,
                ",".join(account.specialties) or "-",
                source,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])


def _passwd(args: argparse.Namespace, config: Config, store: AccountStore) -> None:
    username = _changeable(args.username, config, store)
    store.set_password(username, hash_password(_read_password(args.password_stdin)))
    print(f"password of {username} changed; its earlier sign-ins no longer work")


def _remove(args: argparse.Namespace, config: Config, store: AccountStore) -> None:
    username = _changeable(args.username, config, store)
    store.remove(username)
    print(f"removed {username}")


def _changeable(username: str, config: Config, store: AccountStore) -> str:
    account = store.get(username)
    if account is None:
        raise _Refused(f"no account {username.strip().lower()}")
    if account.username in file_usernames(config):
        raise _Refused(f"{account.username} is defined in {config.auth.accounts_file}: change it there")
    return account.username


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise _Refused("the two passwords differ")
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise _Refused(f"the password must have {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters")
    return password
