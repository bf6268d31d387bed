"""Sign-in tokens: what they carry, and every way a bad one is refused; the generated signing key."""

from __future__ import annotations

import base64
import datetime
import json
import stat
from pathlib import Path

import jwt
import pytest

from signaling.accounts import Account
from signaling.config import Config, ConfigError, load_config
from signaling.tokens import SECRET_FILE, TokenError, TokenIssuer, load_secret

SECRET = b"k" * 64
TTL = datetime.timedelta(minutes=30)
DOCTOR = Account("bs.pao", "BS. Giàng A Páo", "doctor", "ttyt-muong-te", ("noi-khoa",), token_version=3)


def test_round_trip_carries_who_role_facility_and_expiry() -> None:
    issuer = TokenIssuer(SECRET, TTL)
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    claims = issuer.verify(issuer.issue(DOCTOR))
    assert (claims.username, claims.role, claims.facility_id, claims.version) == (
        "bs.pao",
        "doctor",
        "ttyt-muong-te",
        3,
    )
    assert before <= claims.issued_at <= before + datetime.timedelta(seconds=2)
    assert claims.expires_at - claims.issued_at == TTL


def test_expired_token_is_refused_as_expired() -> None:
    issuer = TokenIssuer(SECRET, TTL)
    token = issuer.issue(DOCTOR, now=datetime.datetime.now(datetime.UTC) - TTL - datetime.timedelta(seconds=5))
    with pytest.raises(TokenError) as caught:
        issuer.verify(token)
    assert caught.value.reason == "expired" and "expired" in caught.value.message


def _payload(token: str) -> dict[str, object]:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))  # type: ignore[no-any-return]


def _encode(part: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def forgeries() -> dict[str, str]:
    genuine = TokenIssuer(SECRET, TTL).issue(DOCTOR)
    header, _, signature = genuine.split(".")
    promoted = {**_payload(genuine), "role": "admin"}
    claims = _payload(genuine)
    return {
        "signed with another key": TokenIssuer(b"x" * 64, TTL).issue(DOCTOR),
        "payload changed, signature kept": f"{header}.{_encode(promoted)}.{signature}",
        "alg none": jwt.encode(claims, None, algorithm="none"),  # type: ignore[arg-type]
        "HS512 with the right key": jwt.encode(claims, SECRET, algorithm="HS512"),
        "no version claim": jwt.encode({k: v for k, v in claims.items() if k != "ver"}, SECRET, algorithm="HS256"),
        "another audience": jwt.encode({**claims, "aud": "other-app"}, SECRET, algorithm="HS256"),
        "version is text": jwt.encode({**claims, "ver": "3"}, SECRET, algorithm="HS256"),
        "not a JWT": "hello",
        "empty": "",
    }


@pytest.mark.parametrize("name", list(forgeries()))
def test_forged_or_malformed_token_is_refused_as_invalid(name: str) -> None:
    with pytest.raises(TokenError) as caught:
        TokenIssuer(SECRET, TTL).verify(forgeries()[name])
    assert caught.value.reason == "invalid"


def test_secret_is_generated_once_private_and_reused(tmp_path: Path) -> None:
    config = load_config(None, {"HOICHAN_STORE__PATH": str(tmp_path / "data")})
    first = load_secret(config)
    path = tmp_path / "data" / SECRET_FILE
    assert len(first) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(config) == first
    # and tokens signed before a restart still verify after it
    token = TokenIssuer(first, TTL).issue(DOCTOR)
    assert TokenIssuer(load_secret(config), TTL).verify(token).username == "bs.pao"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_configured_secret_wins_over_the_file(tmp_path: Path) -> None:
    config = Config(store={"path": tmp_path}, auth={"secret": "s" * 32})
    assert load_secret(config) == b"s" * 32
    assert not (tmp_path / SECRET_FILE).exists()


def test_short_secret_is_a_config_error_that_does_not_echo_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"HOICHAN_AUTH__SECRET": "hunter2"})
    assert caught.value.key.startswith("auth.secret") and "hunter2" not in str(caught.value)
    (tmp_path / SECRET_FILE).write_text("short\n")
    with pytest.raises(ConfigError, match="fewer than 32"):
        load_secret(Config(store={"path": tmp_path}))
