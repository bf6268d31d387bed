"""TLS for the built-in server.

Browsers expose camera and microphone only on secure origins (https, or http://localhost), so a LAN trial needs
HTTPS. Production normally keeps TLS on a reverse proxy and leaves this off; for a quick trial, ``self_signed: true``
makes one certificate under ``<store.path>/tls/`` and reuses it on later starts, so a browser exception granted once
keeps working. It is made again only when it no longer covers the configured names or is about to expire.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .config import Config, ConfigError

__all__ = ["SELF_SIGNED_VALIDITY", "ensure_self_signed", "self_signed_names", "self_signed_paths", "ssl_context"]

logger = logging.getLogger(__name__)

SELF_SIGNED_VALIDITY = datetime.timedelta(days=365)
_RENEW_BEFORE = datetime.timedelta(days=7)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def ssl_context(config: Config) -> ssl.SSLContext | None:
    """The server-side context for ``config.server.tls``, or None when the server speaks plain HTTP.

    Raises ``ConfigError`` when the certificate or key cannot be loaded (bad PEM, key not matching the cert).
    """
    tls = config.server.tls
    if tls.cert is not None and tls.key is not None:
        cert, key = tls.cert, tls.key
    elif tls.self_signed:
        cert, key = ensure_self_signed(config)
    else:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise ConfigError("server.tls.cert", f"cannot load certificate {cert} with key {key}: {reason}") from None
    return context


def self_signed_paths(config: Config) -> tuple[Path, Path]:
    """Where the self-signed certificate and its key live: ``<store.path>/tls/{cert,key}.pem``."""
    directory = config.store.path / "tls"
    return directory / "cert.pem", directory / "key.pem"


def self_signed_names(config: Config) -> tuple[list[str], list[IPAddress]]:
    """DNS names and IP addresses the certificate must cover: localhost, loopback, the host, the public URL's host."""
    dns: list[str] = ["localhost"]
    ips: list[IPAddress] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    for host in (config.server.host, config.server.public_host):
        if not host:
            continue
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            name = host.rstrip(".").lower()
            if name not in dns:
                dns.append(name)
            continue
        if not ip.is_unspecified and ip not in ips:  # 0.0.0.0 / :: is a bind-all, not a name anyone browses to
            ips.append(ip)
    return dns, ips


def ensure_self_signed(config: Config, *, now: datetime.datetime | None = None) -> tuple[Path, Path]:
    """Return the self-signed cert and key paths, generating them only if missing, stale or not covering our names."""
    now = now or datetime.datetime.now(datetime.UTC)
    cert_path, key_path = self_signed_paths(config)
    dns, ips = self_signed_names(config)
    if _reusable(cert_path, key_path, dns, ips, now):
        os.chmod(key_path, 0o600)
        return cert_path, key_path
    cert_pem, key_pem = _generate(dns, ips, now)
    directory = cert_path.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_atomically(key_path, key_pem, 0o600)
    _write_atomically(cert_path, cert_pem, 0o644)
    logger.warning(
        "generated a self-signed TLS certificate for %s in %s: browsers will warn until you accept it",
        ", ".join([*dns, *map(str, ips)]),
        directory,
    )
    return cert_path, key_path


def _reusable(cert_path: Path, key_path: Path, dns: list[str], ips: list[IPAddress], now: datetime.datetime) -> bool:
    """An existing pair is kept when it parses, matches, covers every name and is not about to expire."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound):
        return False
    same_key = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    covered = set(dns) <= set(san.get_values_for_type(x509.DNSName)) and set(ips) <= set(
        san.get_values_for_type(x509.IPAddress)
    )
    fresh = cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now > _RENEW_BEFORE
    return same_key and covered and fresh


def _generate(dns: list[str], ips: list[IPAddress], now: datetime.datetime) -> tuple[bytes, bytes]:
    """A P-256 key and a one-year leaf certificate signed by itself (PEM cert, PEM PKCS#8 key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Hoichan"),
            x509.NameAttribute(NameOID.COMMON_NAME, dns[-1] if len(dns) > 1 else dns[0]),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + SELF_SIGNED_VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName([*map(x509.DNSName, dns), *map(x509.IPAddress, ips)]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write via a temp file created with ``mode`` (so a key is never readable by others, even briefly), then rename."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
