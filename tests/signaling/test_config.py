"""Settings: defaults, file, environment precedence, path resolution, one-line errors, and the TLS context."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import stat
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from pydantic import ValidationError

from signaling.config import Config, ConfigError, IceServer, load_config
from signaling.tls import ensure_self_signed, self_signed_paths, ssl_context

ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(path: Path | None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env or {})
    message = str(caught.value)
    assert "\n" not in message and message.startswith("config error: "), message
    return message


# ------------------------------------------------------------------------------------------ defaults and file


def test_defaults_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None, {})
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8080
    assert config.server.public_url is None
    assert not config.server.tls.enabled and config.server.tls.cert is None and config.server.tls.key is None
    assert config.server.max_message_bytes == 65536
    assert config.server.reconnect_grace_seconds == 20
    assert config.media.ice_servers == () and config.media.ice_addresses == ()
    assert config.media.udp_port_min is None and config.media.udp_port_max is None
    assert config.media.room_max_participants == 8
    assert config.store.path == tmp_path / "data"
    assert config.store.redis_url is None
    assert config.recording.directory == tmp_path / "data" / "recordings"
    assert config.logging.level == "INFO"
    assert config.base_url == "http://127.0.0.1:8080/"
    assert config == Config()


def test_shipped_config_yaml_equals_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """config.yaml documents every key with its default value: loading it must change nothing."""
    monkeypatch.chdir(ROOT)
    assert load_config(ROOT / "config.yaml", {}) == load_config(None, {})
    text = (ROOT / "config.yaml").read_text(encoding="utf-8")
    for section, model in Config.model_fields.items():
        assert f"\n{section}:" in text
        for key in model.annotation.model_fields:  # type: ignore[union-attr]
            assert f"  {key}:" in text, f"config.yaml does not document {section}.{key}"


def test_file_values(tmp_path: Path) -> None:
    cert, key = ensure_self_signed(Config(store={"path": tmp_path / "pki"}))
    path = write(
        tmp_path / "config.yaml",
        f"""
        server:
          host: 0.0.0.0
          port: 8443
          public_url: https://consult.example.org/
          tls: {{cert: {cert}, key: {key}}}
          max_message_bytes: 4096
          reconnect_grace_seconds: 2.5
        media:
          ice_servers:
            - urls: stun:stun.example.org:3478
            - urls: ["turn:turn.example.org?transport=udp", "turns:turn.example.org:5349"]
              username: u
              credential: p
          ice_addresses: ["192.0.2.10", "2001:db8::0:1"]
          udp_port_min: 40000
          udp_port_max: 40100
          room_max_participants: 4
        store: {{path: /srv/hoichan, redis_url: "redis://127.0.0.1:6379/0"}}
        recording: {{directory: /srv/recordings}}
        logging: {{level: debug}}
        """,
    )
    config = load_config(path, {})
    assert (config.server.host, config.server.port) == ("0.0.0.0", 8443)
    assert config.base_url == "https://consult.example.org/"
    assert config.server.public_host == "consult.example.org"
    assert (config.server.tls.cert, config.server.tls.key) == (cert, key) and config.server.tls.enabled
    assert config.server.max_message_bytes == 4096 and config.server.reconnect_grace_seconds == 2.5
    assert config.media.ice_servers == (
        IceServer(urls=("stun:stun.example.org:3478",)),
        IceServer(
            urls=("turn:turn.example.org?transport=udp", "turns:turn.example.org:5349"), username="u", credential="p"
        ),
    )
    assert config.media.ice_servers[1].as_rtc_dict() == {
        "urls": ["turn:turn.example.org?transport=udp", "turns:turn.example.org:5349"],
        "username": "u",
        "credential": "p",
    }
    assert config.media.ice_servers[0].as_rtc_dict() == {"urls": ["stun:stun.example.org:3478"]}
    assert config.media.ice_addresses == ("192.0.2.10", "2001:db8::1")
    assert (config.media.udp_port_min, config.media.udp_port_max) == (40000, 40100)
    assert config.media.room_max_participants == 4
    assert config.store.path == Path("/srv/hoichan") and config.store.redis_url == "redis://127.0.0.1:6379/0"
    assert config.recording.directory == Path("/srv/recordings")
    assert config.logging.level == "DEBUG"


def test_empty_file_and_empty_sections_mean_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(write(tmp_path / "empty.yaml", "# nothing\n"), {}).server.port == 8080
    config = load_config(write(tmp_path / "sections.yaml", "server:\n  tls:\nmedia:\n"), {})
    assert config.server == Config().server and config.media == Config().media


def test_models_are_frozen() -> None:
    config = Config()
    with pytest.raises(ValidationError, match="frozen"):
        config.server.port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        config.server = config.server  # type: ignore[misc]
    assert isinstance(load_config(None, {"HOICHAN_MEDIA__ICE_ADDRESSES": '["127.0.0.1"]'}).media.ice_addresses, tuple)
    hash(config)


def test_base_url_from_host_port_and_tls(tmp_path: Path) -> None:
    assert Config(server={"host": "0.0.0.0", "port": 9000}).base_url == "http://localhost:9000/"
    assert Config(server={"host": "::1"}).base_url == "http://[::1]:8080/"
    secure = Config(server={"host": "hoichan.lan", "tls": {"self_signed": True}}, store={"path": tmp_path})
    assert secure.base_url == "https://hoichan.lan:8080/"


# ------------------------------------------------------------------------------------------ environment


def test_env_overrides_file_which_overrides_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.yaml",
        """
        server: {port: 9000, host: 127.0.0.2}
        media: {room_max_participants: 6, ice_addresses: ["10.0.0.1"]}
        """,
    )
    env = {
        "HOICHAN_SERVER__PORT": "9100",
        "HOICHAN_MEDIA__ICE_ADDRESSES": '["127.0.0.1"]',
        "HOICHAN_SERVER__TLS__SELF_SIGNED": "true",
        "hoichan_logging__level": "warning",
        "HOICHAN_CONFIG": "/not/a/key/override",  # no "__": left alone
        "PATH": "/usr/bin",
    }
    config = load_config(path, env)
    assert config.server.port == 9100  # env beats file
    assert config.server.host == "127.0.0.2"  # file beats default
    assert config.media.room_max_participants == 6
    assert config.media.ice_addresses == ("127.0.0.1",)  # lists are replaced, not merged
    assert config.server.tls.self_signed is True
    assert config.logging.level == "WARNING"
    assert config.server.reconnect_grace_seconds == 20  # default


def test_env_json_values_and_clearing(tmp_path: Path) -> None:
    path = write(tmp_path / "config.yaml", "store: {redis_url: 'redis://127.0.0.1'}\n")
    config = load_config(
        path,
        {
            "HOICHAN_MEDIA__ICE_SERVERS": '[{"urls": ["stun:127.0.0.1:3478"]}]',
            "HOICHAN_SERVER__TLS": '{"self_signed": true}',
            "HOICHAN_STORE__REDIS_URL": "",
            "HOICHAN_MEDIA__ROOM_MAX_PARTICIPANTS": "4",
        },
    )
    assert config.media.ice_servers == (IceServer(urls=("stun:127.0.0.1:3478",)),)
    assert config.server.tls.self_signed
    assert config.store.redis_url is None
    assert config.media.room_max_participants == 4


def test_env_relative_paths_use_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "etc" / "config.yaml", "store: {path: filedata}\n")
    config = load_config(path, {"HOICHAN_RECORDING__DIRECTORY": "rec", "HOICHAN_STORE__PATH": "envdata"})
    assert config.store.path == tmp_path / "envdata"
    assert config.recording.directory == tmp_path / "rec"


# ------------------------------------------------------------------------------------------ relative paths


def test_relative_paths_in_file_resolve_against_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "deploy" / "conf"
    cert, key = ensure_self_signed(Config(store={"path": conf_dir}))  # → conf/tls/{cert,key}.pem
    path = write(
        conf_dir / "hoichan.yaml",
        """
        server: {tls: {cert: tls/cert.pem, key: ./tls/key.pem}}
        store: {path: data}
        recording: {directory: ../recordings}
        """,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path("..") / "deploy" / "conf" / "hoichan.yaml", {})
    assert config.server.tls.cert == cert and config.server.tls.key == key
    assert config.store.path == conf_dir / "data"
    assert config.recording.directory == tmp_path / "deploy" / "recordings"
    # Keys the file leaves out keep their defaults, which are relative to the working directory.
    assert load_config(write(conf_dir / "other.yaml", "logging: {level: INFO}\n"), {}).store.path == elsewhere / "data"
    assert path.is_file()


def test_home_directory_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = write(tmp_path / "c" / "config.yaml", "store: {path: ~/hoichan}\n")
    assert load_config(path, {}).store.path == tmp_path / "hoichan"


# ------------------------------------------------------------------------------------------ errors


BAD_VALUES = [
    ("server: {port: 0}", "config error: server.port: must be ≥ 1 (got 0)"),
    ("server: {port: 70000}", "config error: server.port: must be ≤ 65535 (got 70000)"),
    ("server: {port: eighty}", "config error: server.port: must be a whole number (got 'eighty')"),
    ("server: {host: 'http://example.org'}", "config error: server.host: must be a host name or IP address, not a URL"),
    ("server: {host: 'bad host'}", "config error: server.host: must be a host name or IP address (got 'bad host')"),
    ("server: {public_url: 'ftp://x.org'}", "config error: server.public_url: must be an http:// or https:// URL"),
    ("server: {public_url: 'https://'}", "config error: server.public_url: must be an http:// or https:// URL"),
    (
        "server: {tls: {cert: /nonexistent/x.pem, key: /nonexistent/k.pem}}",
        "config error: server.tls.cert: file not found: /nonexistent/x.pem; server.tls.key: file not found: ",
    ),
    (
        "server: {tls: {self_signed: perhaps}}",
        "config error: server.tls.self_signed: must be true or false (got 'perhaps')",
    ),
    ("server: {port: yes}", "config error: server.port: must be a number (got true)"),
    (
        "media: {udp_port_min: true, udp_port_max: 2000}",
        "config error: media.udp_port_min: must be a number (got true)",
    ),
    ("server: {max_message_bytes: 10}", "config error: server.max_message_bytes: must be ≥ 1024 (got 10)"),
    ("server: {reconnect_grace_seconds: -1}", "config error: server.reconnect_grace_seconds: must be ≥ 0 (got -1)"),
    ("server: {reconnect_grace_seconds: soon}", "config error: server.reconnect_grace_seconds: must be a number"),
    ("server: 8080", "config error: server: must be a mapping of keys (got 8080)"),
    ("media: {room_max_participants: 1}", "config error: media.room_max_participants: must be ≥ 2 (got 1)"),
    ("media: {room_max_participants: 33}", "config error: media.room_max_participants: must be ≤ 32 (got 33)"),
    (
        "media: {ice_servers: [{urls: ['http://stun.example.org']}]}",
        "config error: media.ice_servers[0].urls[0]: must start with stun:, turn: or turns: (got 'http://stun.example.org')",
    ),
    ("media: {ice_servers: [{urls: ['stun:']}]}", "config error: media.ice_servers[0].urls[0]: not a valid stun: URI"),
    (
        "media: {ice_servers: [{urls: ['stun:x.org:99999']}]}",
        "config error: media.ice_servers[0].urls[0]: not a valid stun: URI",
    ),
    ("media: {ice_servers: [{urls: []}]}", "config error: media.ice_servers[0].urls: must not be empty"),
    ("media: {ice_servers: [{username: u}]}", "config error: media.ice_servers[0].urls: required"),
    (
        "media: {ice_servers: [{urls: 'turn:t.org'}]}",
        "config error: media.ice_servers[0].username: required for turn:/turns: URIs",
    ),
    (
        "media: {ice_servers: [{urls: 'turns:t.org', username: u}]}",
        "config error: media.ice_servers[0].credential: required for turn:/turns: URIs",
    ),
    ("media: {ice_servers: {urls: 'stun:x'}}", "config error: media.ice_servers: must be a list (got a mapping)"),
    ("media: {ice_addresses: ['eth0']}", "config error: media.ice_addresses[0]: not an IP address (got 'eth0')"),
    (
        "media: {ice_addresses: ['0.0.0.0']}",
        "config error: media.ice_addresses[0]: 0.0.0.0 is not an interface address",
    ),
    ("media: {udp_port_min: 40000}", "config error: media.udp_port_max: required when udp_port_min is set"),
    ("media: {udp_port_max: 40000}", "config error: media.udp_port_min: required when udp_port_max is set"),
    (
        "media: {udp_port_min: 80, udp_port_max: 90}",
        "config error: media.udp_port_min: must be ≥ 1024 (got 80); media.udp_port_max: must be ≥ 1024 (got 90)",
    ),
    (
        "media: {udp_port_min: 5000, udp_port_max: 4000}",
        "config error: media.udp_port_max: must be ≥ udp_port_min (5000) (got 4000)",
    ),
    (
        "store: {redis_url: 'http://127.0.0.1:6379'}",
        "config error: store.redis_url: must be a redis:// or rediss:// URL",
    ),
    ("store: {redis_url: 'redis://127.0.0.1:notaport'}", "config error: store.redis_url: not a valid URL"),
    ("store: {path: 5}", "config error: store.path: must be a path (got 5)"),
    (
        "logging: {level: verbose}",
        "config error: logging.level: must be one of DEBUG, INFO, WARNING, ERROR (got 'verbose')",
    ),
    ("logging: {format: xml}", "config error: logging.format: must be 'text' or 'json' (got 'xml')"),
    (
        "cluster: {role: media}",
        "config error: cluster.redis_url: required when role is media (signaling and media nodes meet in Redis)",
    ),
    ("cluster: {role: edge}", "config error: cluster.role: must be 'all', 'signaling' or 'media' (got 'edge')"),
    ("cluster: {redis_url: 'http://x'}", "config error: cluster.redis_url: must be a redis:// or rediss:// URL"),
    (
        "cluster: {heartbeat_interval: 2, node_timeout: 1}",
        "config error: cluster.node_timeout: must be > heartbeat_interval (2) (got 1)",
    ),
    ("cluster: {node_id: 'a b'}", "config error: cluster.node_id: must be 1-64 letters, digits, '_', '.' or '-'"),
    ("cluster: {key_prefix: ''}", "config error: cluster.key_prefix: must be 1-64 letters, digits"),
    ("metrics: {token: short}", "config error: metrics.token: must be at least 16 characters (got 5)"),
]


def test_cluster_settings(tmp_path: Path) -> None:
    config = load_config(None, {"HOICHAN_CLUSTER__ROLE": "media", "HOICHAN_CLUSTER__REDIS_URL": "redis://10.0.0.2/1",
                                "HOICHAN_CLUSTER__NODE_ID": "media-1", "HOICHAN_METRICS__TOKEN": "x" * 20})
    assert (config.cluster.role, config.cluster.redis_url, config.cluster.node_id) == ("media", "redis://10.0.0.2/1",
                                                                                     "media-1")
    assert config.cluster.enabled and config.metrics.token == "x" * 20
    assert not Config().cluster.enabled and Config().cluster.role == "all"


@pytest.mark.parametrize(("yaml_text", "expected"), BAD_VALUES, ids=[case[0] for case in BAD_VALUES])
def test_bad_value_gives_one_line_naming_the_key(tmp_path: Path, yaml_text: str, expected: str) -> None:
    message = error_of(write(tmp_path / "config.yaml", yaml_text + "\n"))
    assert message.startswith(expected), message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-1", "must be ≥ 0 or 'auto' (got -1)"),
        ("many", "must be a whole number or 'auto' (got 'many')"),
        ("true", "must be a number (got true)"),
    ],
)
def test_union_value_error_is_one_problem_on_the_key(tmp_path: Path, value: str, expected: str) -> None:
    """media.workers is int | "auto": both members fail, the operator gets one message on the key, not two."""
    assert error_of(write(tmp_path / "c.yaml", f"media: {{workers: {value}}}\n")) == (
        f"config error: media.workers: {expected}"
    )
    assert load_config(write(tmp_path / "ok.yaml", "media: {workers: 3}\n"), {}).media.workers == 3


def test_config_error_exposes_key_and_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path / "c.yaml", "media: {room_max_participants: 1}\n"), {})
    assert caught.value.key == "media.room_max_participants"
    assert caught.value.problem == "must be ≥ 2 (got 1)"
    assert str(caught.value) == "config error: media.room_max_participants: must be ≥ 2 (got 1)"


def test_missing_tls_file_names_the_key_and_path(tmp_path: Path) -> None:
    key = write(tmp_path / "key.pem", "x")
    path = write(tmp_path / "c.yaml", f"server: {{tls: {{cert: /x.pem, key: {key}}}}}\n")
    assert error_of(path) == "config error: server.tls.cert: file not found: /x.pem"


def test_tls_cert_and_key_go_together(tmp_path: Path) -> None:
    cert = write(tmp_path / "cert.pem", "x")
    assert error_of(write(tmp_path / "c.yaml", f"server: {{tls: {{cert: {cert}}}}}\n")) == (
        "config error: server.tls.key: required when cert is set"
    )
    assert error_of(write(tmp_path / "c.yaml", f"server: {{tls: {{key: {cert}}}}}\n")) == (
        "config error: server.tls.cert: required when key is set"
    )
    both = f"server: {{tls: {{cert: {cert}, key: {cert}, self_signed: true}}}}\n"
    assert error_of(write(tmp_path / "c.yaml", both)) == (
        "config error: server.tls.self_signed: cannot be combined with cert/key: use one or the other"
    )


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("server: {prot: 80}", "config error: server.prot: unknown key (did you mean 'port'?)"),
        ("sever: {port: 80}", "config error: sever: unknown key (did you mean 'server'?)"),
        (
            "server: {tls: {self_sign: true}}",
            "config error: server.tls.self_sign: unknown key (did you mean 'self_signed'?)",
        ),
        (
            "media: {ice_servers: [{urls: 'stun:x', password: p}]}",
            "config error: media.ice_servers[0].password: unknown key (known keys: urls, username, credential)",
        ),
        ("logging: {colour: true}", "config error: logging.colour: unknown key (known keys: level, format)"),
    ],
)
def test_unknown_key_rejected(tmp_path: Path, yaml_text: str, expected: str) -> None:
    assert error_of(write(tmp_path / "config.yaml", yaml_text + "\n")) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"HOICHAN_SERVER__PORT": "70000"},
            "config error: server.port (from HOICHAN_SERVER__PORT): must be ≤ 65535 (got 70000)",
        ),
        (
            {"HOICHAN_MEDIA__ROOM_MAX_PARTICIPANTS": "1"},
            "config error: media.room_max_participants (from HOICHAN_MEDIA__ROOM_MAX_PARTICIPANTS): must be ≥ 2 (got 1)",
        ),
        (
            {"HOICHAN_SERVER__PROT": "80"},
            "config error: server.prot (from HOICHAN_SERVER__PROT): unknown key (did you mean 'port'?)",
        ),
        (
            {"HOICHAN_SERVRE__PORT": "80"},
            "config error: servre (from HOICHAN_SERVRE__PORT): unknown key (did you mean 'server'?)",
        ),
        (
            {"HOICHAN_SERVER__PORT__X": "80"},
            "config error: server.port.x (from HOICHAN_SERVER__PORT__X): unknown key: server.port has no sub-keys",
        ),
        (
            {"HOICHAN_SERVER____PORT": "80"},
            "config error: HOICHAN_SERVER____PORT: malformed name, expected HOICHAN_<SECTION>__<KEY>",
        ),
        (
            {"HOICHAN_MEDIA__ICE_ADDRESSES": "127.0.0.1"},
            (
                "config error: media.ice_addresses (from HOICHAN_MEDIA__ICE_ADDRESSES): must be a JSON list, e.g. "
                '["a", "b"] (Extra data)'
            ),
        ),
        (
            {"HOICHAN_MEDIA__ICE_ADDRESSES": '["127.0.0.1", "nope"]'},
            "config error: media.ice_addresses[1] (from HOICHAN_MEDIA__ICE_ADDRESSES): not an IP address (got 'nope')",
        ),
        (
            {"HOICHAN_SERVER__TLS": "yes"},
            (
                'config error: server.tls (from HOICHAN_SERVER__TLS): must be a JSON object, e.g. {"key": "value"} '
                "(Expecting value)"
            ),
        ),
        (
            {"HOICHAN_SERVER__TLS__CERT": "/x.pem", "HOICHAN_SERVER__TLS__KEY": "/x.pem"},
            (
                "config error: server.tls.cert (from HOICHAN_SERVER__TLS__CERT): file not found: /x.pem; "
                "server.tls.key (from HOICHAN_SERVER__TLS__KEY): file not found: /x.pem"
            ),
        ),
    ],
)
def test_bad_env_names_the_key_and_variable(env: dict[str, str], expected: str) -> None:
    assert error_of(None, env) == expected


def test_missing_file(tmp_path: Path) -> None:
    assert error_of(tmp_path / "nope.yaml") == f"config error: {tmp_path / 'nope.yaml'}: file not found"
    assert error_of(tmp_path) == f"config error: {tmp_path}: is a directory, not a file"


def test_bad_yaml(tmp_path: Path) -> None:
    path = write(tmp_path / "config.yaml", "server:\n  port: 80\n  host: [unclosed\n")
    message = error_of(path)
    assert message.startswith(f"config error: {path}: invalid YAML at line "), message
    path = write(tmp_path / "config.yaml", "server:\n  port: 80\n port: 81\n")
    assert error_of(path).startswith(f"config error: {path}: invalid YAML at line 3, column 2: ")


def test_duplicate_yaml_key_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "config.yaml", "server:\n  port: 80\n  port: 81\n")
    assert error_of(path) == f"config error: {path}: invalid YAML at line 3, column 3: duplicate key 'port'"


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path / "config.yaml", "- server\n")
    assert error_of(path) == f"config error: {path}: must be a mapping of sections (server, media, ...), got a list"


def test_every_error_is_reported_on_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "server: {port: 0, host: 'a\\nb'}\nlogging: {level: 'x\\ny'}\n")
    message = error_of(path)
    assert (
        message.count("; ") == 2
        and "server.port" in message
        and "server.host" in message
        and "logging.level" in message
    )


# ------------------------------------------------------------------------------------------ TLS


def test_no_tls_means_no_context() -> None:
    assert ssl_context(Config()) is None


def san_of(cert_path: Path) -> tuple[list[str], list[str]]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName), [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


async def handshake(server_context: ssl.SSLContext, cafile: Path, server_hostname: str) -> bytes:
    """A real TLS handshake on loopback, verifying the certificate against itself as the only trust anchor."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    client_context = ssl.create_default_context(cafile=str(cafile))
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=client_context, server_hostname=server_hostname), 10
        )
        writer.write(b"hello\n")
        reply = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        return reply
    finally:
        server.close()
        await server.wait_closed()


async def test_self_signed_generated_loadable_and_reused(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path / "config.yaml",
            """
            server: {host: 0.0.0.0, public_url: "https://hoichan.example.lan:8443/", tls: {self_signed: true}}
            store: {path: store}
            """,
        ),
        {},
    )
    context = ssl_context(config)
    assert isinstance(context, ssl.SSLContext)
    cert_path, key_path = self_signed_paths(config)
    assert cert_path == tmp_path / "store" / "tls" / "cert.pem" and key_path.parent == cert_path.parent
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    dns, ips = san_of(cert_path)
    assert {"localhost", "hoichan.example.lan"} <= set(dns)
    assert "127.0.0.1" in ips and "0.0.0.0" not in ips
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=364) < lifetime <= datetime.timedelta(days=366)

    assert await handshake(context, cert_path, "localhost") == b"hello\n"
    assert await handshake(context, cert_path, "hoichan.example.lan") == b"hello\n"

    before = (cert_path.read_bytes(), key_path.read_bytes(), cert_path.stat().st_mtime_ns)
    again = ssl_context(config)
    assert isinstance(again, ssl.SSLContext)
    assert (cert_path.read_bytes(), key_path.read_bytes(), cert_path.stat().st_mtime_ns) == before


def test_self_signed_covers_configured_ip_host(tmp_path: Path) -> None:
    config = Config(server={"host": "192.0.2.7", "tls": {"self_signed": True}}, store={"path": tmp_path})
    ssl_context(config)
    dns, ips = san_of(self_signed_paths(config)[0])
    assert dns == ["localhost"] and {"127.0.0.1", "192.0.2.7"} <= set(ips)


def test_self_signed_regenerated_when_names_change_or_expiring(tmp_path: Path) -> None:
    first = Config(server={"tls": {"self_signed": True}}, store={"path": tmp_path})
    cert_path, _ = ensure_self_signed(first)
    original = cert_path.read_bytes()
    ensure_self_signed(first)
    assert cert_path.read_bytes() == original

    renamed = Config(server={"host": "clinic.lan", "tls": {"self_signed": True}}, store={"path": tmp_path})
    ensure_self_signed(renamed)
    assert cert_path.read_bytes() != original and "clinic.lan" in san_of(cert_path)[0]

    current = cert_path.read_bytes()
    ensure_self_signed(renamed, now=datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=360))
    assert cert_path.read_bytes() != current  # within a week of expiry: renewed


def test_self_signed_recovers_from_a_corrupt_file(tmp_path: Path) -> None:
    config = Config(server={"tls": {"self_signed": True}}, store={"path": tmp_path})
    cert_path, key_path = self_signed_paths(config)
    write(cert_path, "not a certificate")
    write(key_path, "not a key")
    assert isinstance(ssl_context(config), ssl.SSLContext)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


async def test_given_cert_and_key_are_loaded(tmp_path: Path) -> None:
    cert, _ = ensure_self_signed(Config(store={"path": tmp_path}))
    path = write(tmp_path / "c.yaml", "server: {tls: {cert: tls/cert.pem, key: tls/key.pem}}\n")
    config = load_config(path, {})
    context = ssl_context(config)
    assert isinstance(context, ssl.SSLContext)
    assert await handshake(context, cert, "localhost") == b"hello\n"


def test_unloadable_cert_is_a_config_error(tmp_path: Path) -> None:
    cert, _ = ensure_self_signed(Config(store={"path": tmp_path / "a"}))
    _, other_key = ensure_self_signed(Config(store={"path": tmp_path / "b"}))
    mismatched = Config(server={"tls": {"cert": cert, "key": other_key}})
    with pytest.raises(ConfigError) as caught:
        ssl_context(mismatched)
    assert caught.value.key == "server.tls.cert" and "\n" not in str(caught.value)
    garbage = write(tmp_path / "garbage.pem", "-----BEGIN CERTIFICATE-----\nnope\n")
    with pytest.raises(ConfigError, match=r"^config error: server\.tls\.cert: cannot load certificate"):
        ssl_context(Config(server={"tls": {"cert": garbage, "key": other_key}}))
