"""The ``runc`` isolation: a third-party isolation plugin built on pinnace's ``oci`` one.

It shows how little a package needs to add an isolation strategy of its own:
a class with the ``pinnace.isolation`` hooks (here all inherited from
:class:`pinnace_plugins.isolation_oci.OciIsolation`, which writes the OCI
bundle and drives the runtime's commands), the options it declares, and an
entry point. This one always runs ``runc``, named by its own ``runc`` option.
"""

from __future__ import annotations

from pinnace.plugin import Option
from pinnace_plugins.isolation_oci import OciIsolation


class RuncIsolation(OciIsolation):
    """Containers run by ``runc`` (the OCI reference runtime)."""

    options = (Option("runc", "runc", "the runc binary (a name on PATH or a path)"),)
    runtime_option = "runc"
