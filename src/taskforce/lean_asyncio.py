"""asyncio without the ssl module until TLS is wanted.

asyncio imports ssl when it is imported itself, and ssl maps OpenSSL's libcrypto: 3.8 MB
of a daemon's resident memory and 40 ms of its start, spent by every taskforce although
most never open a TLS connection. The taskforce package installs, on import, a finder that
hides ssl from asyncio while asyncio loads (importing nothing itself: the command's client
side never imports asyncio); `tls()` imports ssl for real and hands it to the asyncio
modules that look for it. Every use of ssl with asyncio in taskforce goes through `tls()`.
"""

from __future__ import annotations

import sys
from types import ModuleType


class _NoSslWhileAsyncioLoads:
    """Refuses `import ssl` only while asyncio itself is being imported."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "ssl":
            asyncio = sys.modules.get("asyncio")
            # importlib marks a module's spec while the module's code runs.
            if asyncio is not None and getattr(asyncio.__spec__, "_initializing", False):
                raise ModuleNotFoundError("ssl waits until TLS is used", name="ssl")


if "asyncio" not in sys.modules:
    sys.meta_path.insert(0, _NoSslWhileAsyncioLoads())


# The asyncio modules that keep `ssl` as a module global (None when it failed to import).
_USERS = ("asyncio.base_events", "asyncio.selector_events", "asyncio.sslproto")


def tls() -> ModuleType:
    """The ssl module, with asyncio made able to use it."""
    import ssl

    for name in _USERS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "ssl", ssl) is None:
            module.ssl = ssl  # type: ignore[attr-defined]
    sslproto = sys.modules.get("asyncio.sslproto")
    if sslproto is not None and not hasattr(sslproto, "SSLAgainErrors"):
        # Defined at import only when ssl was there.
        sslproto.SSLAgainErrors = (ssl.SSLWantReadError, ssl.SSLSyscallError)  # type: ignore[attr-defined]
    return ssl
