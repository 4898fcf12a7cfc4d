"""etcd URLs: where a fleet's configuration, roles and shared state live.

    etcd://[user@]host[:port][,host[:port]...]/key/path[?option=value&...]
    etcds://...                       the same over TLS

Options: ``cacert``, ``cert`` and ``key`` (PEM files: the CA to trust, and a client
certificate and its key; any of them implies TLS), ``user`` and ``password_file``
(etcd authentication; the password may also come from ``TASKFORCE_ETCD_PASSWORD``),
``ttl`` (seconds of the host's lease, default 10), ``prefix`` (where status and leader
keys go; default the key's parent, e.g. ``/taskforce/`` for ``/taskforce/config``) and
``cache`` (the directory of the on-disk copy of the last good configuration).

``{Task_host}`` and ``{Task_fqdn}`` in the key are replaced by this host's names, so one
command line serves every host: ``-r etcd://10.0.0.5/taskforce/roles/{Task_host}``.

This module imports nothing heavy: the command uses it to tell URLs from paths.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

SCHEMES = ("etcd", "etcds")
DEFAULT_PORT = 2379
DEFAULT_TTL = 10
PASSWORD_ENV = "TASKFORCE_ETCD_PASSWORD"
_OPTIONS = ("cacert", "cert", "key", "user", "password_file", "ttl", "prefix", "cache")


class EtcdUrlError(ValueError):
    pass


def is_etcd_url(text: str | None) -> bool:
    """Whether `text` names an etcd key rather than a file."""
    return text is not None and text.split("://", 1)[0].lower() in SCHEMES and "://" in text


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach an etcd cluster: equal connections share one client."""

    endpoints: tuple[tuple[str, int], ...]
    tls: bool = False
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    user: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never show the password
        hosts = ",".join(f"{h}:{p}" for h, p in self.endpoints)
        return f"Connection({'etcds' if self.tls else 'etcd'}://{hosts})"


@dataclass(frozen=True, slots=True)
class EtcdUrl:
    connection: Connection
    key: str  # the key, with the host's names substituted
    prefix: str  # ends with "/"
    ttl: int
    cache: str | None

    @property
    def display(self) -> str:
        """The URL as problems and logs show it (no credentials, no options)."""
        hosts = ",".join(_netloc(h, p) for h, p in self.connection.endpoints)
        scheme = "etcds" if self.connection.tls else "etcd"
        return f"{scheme}://{hosts}{self.key}"


def parse_etcd_url(text: str, hostname: str = "", fqdn: str = "") -> EtcdUrl:
    """Parse an etcd URL; EtcdUrlError names what is wrong."""
    if not is_etcd_url(text):
        raise EtcdUrlError(f"{text!r} is not an etcd:// or etcds:// URL")
    # Here, not at import: every taskforce command imports this module to tell URLs from
    # paths, and urllib.parse imports ipaddress.
    from urllib.parse import unquote, urlsplit

    text = text.replace("{Task_host}", hostname).replace("{Task_fqdn}", fqdn or hostname)
    parts = urlsplit(text)
    if parts.fragment:
        raise EtcdUrlError(f"{text!r}: an etcd URL has no #fragment")
    options = _options(parts.query, text)
    netloc = parts.netloc
    user = options.get("user")
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        if ":" in userinfo:
            # A password on the command line is visible to every user of the machine.
            raise EtcdUrlError("give the etcd password with password_file= or $" + PASSWORD_ENV)
        user = unquote(userinfo) or user
    endpoints = tuple(_endpoint(item, text) for item in netloc.split(","))
    key = unquote(parts.path)
    if not key.startswith("/") or key == "/":
        raise EtcdUrlError(f"{text!r}: the URL names no key (etcd://HOST:PORT/key/path)")
    cacert, cert, cert_key = options.get("cacert"), options.get("cert"), options.get("key")
    if (cert is None) != (cert_key is None):
        raise EtcdUrlError(f"{text!r}: a client certificate needs both cert= and key=")
    connection = Connection(
        endpoints=endpoints,
        tls=parts.scheme.lower() == "etcds" or any((cacert, cert, cert_key)),
        cacert=cacert,
        cert=cert,
        key=cert_key,
        user=user,
        password=_password(options.get("password_file"), user),
    )
    prefix = options.get("prefix") or key.rsplit("/", 1)[0] + "/"
    if not prefix.startswith("/"):
        raise EtcdUrlError(f"{text!r}: prefix= must start with '/'")
    return EtcdUrl(
        connection=connection,
        key=key,
        prefix=prefix if prefix.endswith("/") else prefix + "/",
        ttl=_ttl(options.get("ttl"), text),
        cache=options.get("cache"),
    )


def _options(query: str, text: str) -> dict[str, str]:
    from urllib.parse import parse_qsl

    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if name not in _OPTIONS:
            raise EtcdUrlError(f"{text!r}: unknown option {name!r} (known: {', '.join(_OPTIONS)})")
        options[name] = value
    return options


def _endpoint(item: str, text: str) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [::1]:2379
        host, _, rest = item[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif item.count(":") == 1:
        host, port_text = item.split(":")
    else:
        host, port_text = item, ""
    if not host:
        raise EtcdUrlError(f"{text!r}: an endpoint has no host")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise EtcdUrlError(f"{text!r}: bad port {port_text!r}")
    return host, int(port_text)


def _ttl(value: str | None, text: str) -> int:
    if value is None:
        return DEFAULT_TTL
    # etcd counts leases in whole seconds, and will not grant less than about 2.
    if not value.isdigit() or not 2 <= int(value) <= 3600:
        raise EtcdUrlError(f"{text!r}: ttl= must be whole seconds from 2 to 3600")
    return int(value)


def _password(password_file: str | None, user: str | None) -> str | None:
    if user is None:
        return None
    if password_file is not None:
        try:
            with open(password_file, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as exc:
            raise EtcdUrlError(f"cannot read the etcd password file: {exc}") from None
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        raise EtcdUrlError(f"user {user!r} needs a password: password_file= or ${PASSWORD_ENV}")
    return password


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


FLEET_EXTRA = "pip install 'taskforce[fleet]'"


def missing_fleet_extra() -> str | None:
    """A one-line reason when the etcd client (the `fleet` extra) cannot be imported.

    Asked only once an etcd URL or the fleet command is in play: plain hosts never pay
    for the import.
    """
    # gRPC's fork handlers off first: left on, they abort children forked while its threads
    # run (a `taskforce -C` child of a test runner died of SIGABRT before exec).
    import taskforce.fleet.grpc_fork  # noqa: F401

    try:
        import aetcd  # type: ignore[import-untyped]  # noqa: F401
    except ImportError as exc:
        what = f"{exc.name} is missing" if exc.name else str(exc)
        return f"the fleet needs the etcd client ({what}): {FLEET_EXTRA}"
    return None
