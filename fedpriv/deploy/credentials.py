"""Keys and certificates for a Flower 1.41 deployment, made with `cryptography`.

- A CA (ECDSA P-256, self-signed) whose certificate every SuperNode and the Flower CLI trust
  (`--root-certificates`, `root-certificates` in the CLI's connection), and which signs
- the SuperLink's TLS certificate, valid for the address the devices connect to plus localhost,
  127.0.0.1 and ::1 (the SuperLink's own ServerApp process connects to it locally).
- One SuperNode authentication key pair per device, in the format Flower loads: ECDSA on a NIST
  curve (P-384, as in Flower's docs), the private key in OpenSSH format (`flower-supernode
  --auth-supernode-private-key`, read with `load_ssh_private_key`), the public key as an OpenSSH
  line (`flwr supernode register`, read with `load_ssh_public_key`).

Every file is created with its final mode (keys 0600, certificates and public keys 0644) before a
byte is written, and never replaces an existing file unless asked to.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_MODE = 0o600
PUBLIC_MODE = 0o644
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
NODE_KEY_CURVE = ec.SECP384R1()  # Flower's docs: `ssh-keygen -t ecdsa -b 384`; any NIST curve is accepted


def create_file(path: Path, data: bytes, mode: int, *, replace: bool = False) -> Path:
    """Write `data` to a new file created with `mode` (exactly, whatever the umask): no moment at which
    a key is readable by others. `replace`: remove an existing file first (else FileExistsError)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if replace:
        path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits of `mode`; nothing is written yet
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        if fd >= 0:
            os.close(fd)
    return path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedpriv"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def subject_alternative_names(address: str) -> list[x509.GeneralName]:
    """The SANs of the SuperLink's certificate: `address` (an IP or a DNS name) and the local names."""
    names: list[x509.GeneralName] = []
    for name in dict.fromkeys([address, *LOCAL_NAMES]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    return names


@dataclass(frozen=True)
class TlsMaterial:
    ca_cert: bytes  # PEM
    ca_key: bytes  # PEM (PKCS#8): keep it off the server; it can sign certificates the devices trust
    server_cert: bytes  # PEM
    server_key: bytes  # PEM (PKCS#8)


def make_tls_material(address: str, days: int = 365) -> TlsMaterial:
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("fedpriv federation CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(address)).issuer_name(ca_name).public_key(server_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(subject_alternative_names(address)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return TlsMaterial(_pem_cert(ca_cert), _pem_key(ca_key), _pem_cert(server_cert), _pem_key(server_key))


@dataclass(frozen=True)
class NodeKey:
    private_openssh: bytes  # for `flower-supernode --auth-supernode-private-key`
    public_openssh: bytes  # one line, for `flwr supernode register`


def make_node_key(comment: str = "") -> NodeKey:
    key = ec.generate_private_key(NODE_KEY_CURVE)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return NodeKey(private, public + (f" {comment}".encode() if comment else b"") + b"\n")
