"""A self-signed certificate for the TLS listeners and clients under test."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Certificate:
    cert: Path  # the certificate alone: what a client trusts (--cafile)
    key: Path
    combined: Path  # certificate and key in one PEM file: what a listener's certfile names


def self_signed(directory: Path) -> Certificate:
    """A certificate for 127.0.0.1 and localhost, made by openssl (skips without it)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    combined = directory / "server.pem"
    combined.write_bytes(cert.read_bytes() + key.read_bytes())
    return Certificate(cert, key, combined)
