"""``import commandbus.sync``: the synchronous companion, if installed.

Re-exports ``commandbus_sync``; raises an ImportError that says how to install it otherwise.
"""

from commandbus import _load_sync

_module = _load_sync()
globals().update({name: getattr(_module, name) for name in _module.__all__})
__all__ = list(_module.__all__)
