"""pyroute2's ``IPRoute``, imported without the package's ``__init__``.

``import pyroute2.iproute`` first runs ``pyroute2/__init__.py``, which imports
every pyroute2 API (NDB, IPDB, conntrack, ipset, wireless ...): about 60 ms
more than the modules ``IPRoute`` needs. A bare package object stands in for
it, so only the submodules used are imported.
"""

from __future__ import annotations

import sys
from typing import Any


def iproute() -> Any:
    """The ``IPRoute`` class (imported on first use)."""
    if "pyroute2" not in sys.modules:
        import importlib.util
        import types

        spec = importlib.util.find_spec("pyroute2")
        if spec is None or spec.submodule_search_locations is None:
            from pinnace.errors import Unavailable

            raise Unavailable("the bridge network needs pyroute2: pip install 'pinnace[net]'")
        package = types.ModuleType("pyroute2")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["pyroute2"] = package
    from pyroute2.iproute.linux import IPRoute

    return IPRoute
