"""gicap: an ICAP server with Secure ICAP (mTLS) that disarms files passing through a proxy."""

import pluggy

__version__ = "0.1.0"

#: Decorator for plugin hook implementations: ``@gicap.hookimpl``.
hookimpl = pluggy.HookimplMarker("gicap")

__all__ = ["__version__", "hookimpl"]
