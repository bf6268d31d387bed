"""Accounts: the store, the accounts file (validation and merge), and the ``hoichan user`` CLI as a subprocess."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import ROOT

from signaling.accounts import Account, AccountStore, hash_password, load_accounts_file, open_accounts
from signaling.config import Config, ConfigError, load_config
from signaling.store import DATABASE_NAME, connect

KNOWN_HASH = "$argon2id$v=19$m=65536,t=3,p=4$EzQ2LulnUZHEHIZIO5mY7w$isyH5j95G6Omq4XsqKloUNQCXSudd74BsZbzuw9d4oo"
SPECIALIST = Account("pgs.tam", "PGS. TS. Nguyễn Văn Tâm", "doctor", "bv-bach-mai", ("tim-mach",))


@pytest.fixture
def store(tmp_path: Path) -> AccountStore:
    return AccountStore(connect(tmp_path))


async def test_add_get_authenticate_passwd_remove(store: AccountStore, tmp_path: Path) -> None:
    assert store.add(SPECIALIST, hash_password("mat-khau-dung"))
    assert not store.add(SPECIALIST, hash_password("khac-hoan-toan"))  # username taken
    assert store.get("PGS.Tam ") == SPECIALIST  # usernames are case-insensitive
    assert store.all() == [SPECIALIST]

    assert await store.authenticate("pgs.tam", "mat-khau-dung") == SPECIALIST
    assert await store.authenticate("pgs.tam", "mat-khau-sai") is None
    assert await store.authenticate("nobody", "mat-khau-dung") is None

    assert store.set_password("pgs.tam", hash_password("mat-khau-moi"))
    assert store.get("pgs.tam").token_version == 1  # type: ignore[union-attr]
    assert await store.authenticate("pgs.tam", "mat-khau-dung") is None
    assert await store.authenticate("pgs.tam", "mat-khau-moi") is not None
    assert not store.set_password("nobody", hash_password("mat-khau-moi"))

    assert store.remove("pgs.tam") and not store.remove("pgs.tam")
    assert store.get("pgs.tam") is None


def test_database_is_private_and_holds_no_clear_password(store: AccountStore, tmp_path: Path) -> None:
    store.add(SPECIALIST, hash_password("mat-khau-bi-mat"))
    database = tmp_path / DATABASE_NAME
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(DATABASE_NAME))
    assert b"mat-khau-bi-mat" not in data and b"$argon2id$" in data


def test_a_second_process_sees_changes_at_once(store: AccountStore, tmp_path: Path) -> None:
    other = AccountStore(connect(tmp_path))  # as the CLI next to a running server
    other.add(SPECIALIST, hash_password("mat-khau-dung"))
    assert store.get("pgs.tam") == SPECIALIST


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_example_file_is_valid_and_covers_every_role() -> None:
    entries = load_accounts_file(ROOT / "accounts.example.yaml")
    assert {e.role for e in entries} == {"admin", "technician", "doctor"}
    assert any(e.specialties for e in entries)
    assert all(e.password for e in entries)  # clear passwords: that is what makes it a trial file


def test_file_is_merged_and_a_restart_signs_nobody_out(tmp_path: Path) -> None:
    hashed = hash_password("mat-khau-ky-thuat")
    accounts = write(
        tmp_path / "accounts.yaml",
        f"""
        - {{username: BS.Pao, display_name: BS. Giàng A Páo, role: doctor, facility: ttyt-muong-te,
            specialties: [noi-khoa, noi-khoa], password: mat-khau-bac-si}}
        - {{username: ktv.lan, display_name: KTV. Lò Thị Lan, role: technician, facility: ttyt-muong-te,
            password_hash: "{hashed}"}}
        """,
    )
    config = Config(store={"path": tmp_path / "data"}, auth={"accounts_file": accounts})
    store = open_accounts(config)
    store.add(SPECIALIST, hash_password("mat-khau-dung"))  # made with the CLI: the file leaves it alone
    doctor = store.get("bs.pao")
    assert doctor == Account("bs.pao", "BS. Giàng A Páo", "doctor", "ttyt-muong-te", ("noi-khoa",))

    store = open_accounts(config)  # a restart
    assert store.get("bs.pao") == doctor and store.get("ktv.lan").token_version == 0  # type: ignore[union-attr]
    assert store.get("pgs.tam") == SPECIALIST

    accounts.write_text(accounts.read_text().replace("mat-khau-bac-si", "mat-khau-moi-1").replace("KTV.", "CN."))
    store = open_accounts(config)
    assert store.get("bs.pao").token_version == 1  # type: ignore[union-attr]  # new password: old tokens void
    assert store.get("ktv.lan").display_name == "CN. Lò Thị Lan"  # type: ignore[union-attr]
    assert store.get("ktv.lan").token_version == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("{username: a, display_name: A, role: nurse, facility: f, password: '12345678'}", "entry 1 (a): role:"),
        ("{username: a, display_name: A, role: admin, facility: f}", "exactly one of password or password_hash"),
        (
            "{username: a, display_name: A, role: admin, facility: f, password: '12345678', password_hash: '"
            + KNOWN_HASH
            + "'}",
            "exactly one of password or password_hash",
        ),
        ("{username: a, display_name: A, role: admin, facility: f, password_hash: md5}", "password_hash: must be an"),
        ("{username: a, display_name: A, role: admin, facility: f, password: short}", "password: String should have"),
        (
            "{username: a, display_name: A, role: admin, facility: BV Bach Mai, password: '12345678'}",
            "facility: use letters without accents",
        ),
        (
            "{username: 'a b', display_name: A, role: admin, facility: f, password: '12345678'}",
            "username: use letters without accents",
        ),
        (
            "{username: a, display_name: A, role: admin, facility: f, specialties: [x], password: '12345678'}",
            "only doctors have specialties",
        ),
        ("{username: a, role: admin, facility: f, password: '12345678'}", "display_name: Field required"),
        ("{username: a, display_name: A, role: admin, facility: f, password: '12345678', email: x}", "email: Extra"),
        ("just a string", "entry 1: Input should be"),
    ],
)
def test_bad_entry_is_one_error_naming_it(tmp_path: Path, entry: str, problem: str) -> None:
    path = write(tmp_path / "accounts.yaml", f"- {entry}\n")
    with pytest.raises(ConfigError) as caught:
        load_accounts_file(path)
    message = str(caught.value)
    assert message.startswith("config error: auth.accounts_file: ") and "\n" not in message
    assert problem in message, message


def test_duplicate_username_and_wrong_shape(tmp_path: Path) -> None:
    entry = "{username: a, display_name: A, role: admin, facility: f, password: '12345678'}"
    path = write(tmp_path / "accounts.yaml", f"- {entry}\n- {entry.replace('username: a', 'username: A')}\n")
    with pytest.raises(ConfigError, match=r"entry 2 \(A\): username a is listed twice"):
        load_accounts_file(path)
    with pytest.raises(ConfigError, match="must be a list of accounts"):
        load_accounts_file(write(tmp_path / "accounts.yaml", "username: a\n"))
    assert load_accounts_file(write(tmp_path / "accounts.yaml", "# nobody yet\n")) == []


def test_missing_accounts_file_stops_the_config() -> None:
    with pytest.raises(ConfigError, match="auth.accounts_file.*file not found"):
        load_config(None, {"HOICHAN_AUTH__ACCOUNTS_FILE": "/nonexistent/accounts.yaml"})


# --------------------------------------------------------------------------------------------------------- CLI


def hoichan(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOICHAN_STORE__PATH": str(tmp_path / "data")}
    return subprocess.run(
        [sys.executable, "-m", "signaling.cli", "user", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_add_list_passwd_remove_round_trip(tmp_path: Path) -> None:
    added = hoichan(
        tmp_path,
        "add",
        "PGS.Tam",
        "--role",
        "doctor",
        "--facility",
        "bv-bach-mai",
        "--name",
        "PGS. TS. Nguyễn Văn Tâm",
        "--specialty",
        "tim-mach",
        "--password-stdin",
        stdin="mat-khau-chuyen-gia\n",
    )
    assert added.returncode == 0, added.stderr
    store = AccountStore(connect(tmp_path / "data"))
    assert store.get("pgs.tam") == SPECIALIST

    listed = hoichan(tmp_path, "list")
    assert listed.returncode == 0
    assert "pgs.tam" in listed.stdout and "tim-mach" in listed.stdout and "Nguyễn Văn Tâm" in listed.stdout
    assert "argon2" not in listed.stdout and "mat-khau" not in listed.stdout

    again = hoichan(tmp_path, "add", "pgs.tam", "--role", "admin", "--facility", "x", "--name", "X", "--password-stdin")
    assert again.returncode == 1 and "already exists" in again.stderr

    changed = hoichan(tmp_path, "passwd", "pgs.tam", "--password-stdin", stdin="mat-khau-moi-hon\n")
    assert changed.returncode == 0, changed.stderr
    assert store.get("pgs.tam").token_version == 1  # type: ignore[union-attr]

    removed = hoichan(tmp_path, "remove", "pgs.tam")
    assert removed.returncode == 0 and store.get("pgs.tam") is None
    assert "pgs.tam" not in hoichan(tmp_path, "list").stdout
    missing = hoichan(tmp_path, "remove", "pgs.tam")
    assert missing.returncode == 1 and "no account pgs.tam" in missing.stderr


def test_cli_refuses_bad_input_with_one_line(tmp_path: Path) -> None:
    base = ["add", "bs.a", "--role", "doctor", "--name", "BS. A", "--password-stdin"]
    bad_facility = hoichan(tmp_path, *base, "--facility", "Bệnh viện A", stdin="mat-khau-dai-du\n")
    assert bad_facility.returncode == 1 and "facility: use letters without accents" in bad_facility.stderr
    short = hoichan(tmp_path, *base, "--facility", "bv-bach-mai", stdin="ngan\n")
    assert short.returncode == 1 and "at least 8" not in short.stderr and "8 to 1024" in short.stderr
    bad_role = hoichan(tmp_path, "add", "x", "--role", "nurse", "--facility", "f", "--name", "X")
    assert bad_role.returncode == 2 and "invalid choice: 'nurse'" in bad_role.stderr
    assert AccountStore(connect(tmp_path / "data")).all() == []


def test_cli_leaves_file_accounts_to_the_file(tmp_path: Path) -> None:
    accounts = write(
        tmp_path / "accounts.yaml",
        "- {username: quantri, display_name: Quản trị, role: admin, facility: so-y-te-lai-chau, password: quantri-thu}\n",
    )
    config = write(tmp_path / "config.yaml", f"auth: {{accounts_file: {accounts}}}\n")
    listed = hoichan(tmp_path, "list", "--config", str(config))
    assert listed.returncode == 0 and "quantri" in listed.stdout and "file" in listed.stdout
    refused = hoichan(tmp_path, "passwd", "quantri", "--config", str(config), "--password-stdin", stdin="abcdefghij\n")
    assert refused.returncode == 1 and "change it there" in refused.stderr
    broken = write(tmp_path / "broken.yaml", "auth: {accounts_file: /nonexistent.yaml}\n")
    failed = hoichan(tmp_path, "list", "--config", str(broken))
    assert failed.returncode == 2 and failed.stderr.startswith("config error: auth.accounts_file")
