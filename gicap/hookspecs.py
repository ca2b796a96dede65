"""The plugin contract: every hook gicap calls, with its arguments and meaning.

Plugins are modules or objects with functions marked ``@gicap.hookimpl`` and named
after these specifications. They are found through the ``gicap`` entry-point group
of installed distributions (``[project.entry-points.gicap]`` in a plugin's
``pyproject.toml``). gicap's own services are registered the same way. Hooks are
always called with keyword arguments, so an implementation may accept only the
arguments it needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from gicap.config import Settings
    from gicap.services.base import Service

hookspec = pluggy.HookspecMarker("gicap")


@hookspec
def gicap_register_services(settings: Settings) -> list[Service]:
    """Return the ICAP services this plugin offers.

    :param settings: the validated, frozen settings of the server.
    :returns: a list of :class:`gicap.services.base.Service` objects. Each service is
        reachable at ``icap://HOST:PORT/<service.name>`` (and ``icaps://`` on the TLS
        listener). Two plugins offering the same name is a start-up error.
    """
    raise NotImplementedError
