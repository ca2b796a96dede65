"""The plugin contract: every hook gicap calls, with its arguments and meaning.

Plugins are modules or objects with functions marked ``@gicap.hookimpl`` and named
after these specifications. They are found through the ``gicap`` entry-point group
of installed distributions (``[project.entry-points.gicap]`` in a plugin's
``pyproject.toml``). gicap's own services, detector and response builder are
registered the same way. Hooks are always called with keyword arguments, so an
implementation may accept only the arguments it needs.

The chain for one file: ``gicap_preview_decision`` (may answer before the body is
read) → ``gicap_detect_file_type`` → ``gicap_disarm`` (in an isolated worker process)
→ ``gicap_build_response`` → ``gicap_transaction_finished``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from gicap.cdr.types import DisarmRequest, DisarmResult, FileType
    from gicap.config import Settings
    from gicap.plugins import PluginHost
    from gicap.services.base import Service

hookspec = pluggy.HookspecMarker("gicap")


@hookspec
def gicap_register_services(settings: Settings, host: PluginHost) -> list[Service]:
    """Return the ICAP services this plugin offers.

    :param settings: the validated, frozen settings of the server.
    :param host: the plugin host, for services that call other hooks.
    :returns: a list of :class:`gicap.services.base.Service` objects. Each service is
        reachable at ``icap://HOST:PORT/<service.name>`` (and ``icaps://`` on the TLS
        listener). Two plugins offering the same name is a start-up error.
    """
    raise NotImplementedError


@hookspec
def gicap_file_types() -> list[str]:
    """Return the names of the file types this plugin disarms (e.g. ``["csv"]``).

    Used to list plugins (``gicap plugins``) and to know at preview time whether a
    type is supported at all. Types are the names :func:`gicap_detect_file_type` gives.
    """
    raise NotImplementedError


@hookspec
def gicap_policy_switches() -> dict[str, list[str]]:
    """Return the policy switches of the file families this plugin's engines handle,
    as ``{family: [switch, ...]}`` (e.g. ``{"cad": ["macros", "external_links"]}``).

    Each switch takes ``allow``, ``sanitise`` or ``disallow`` and defaults to
    ``sanitise``; a profile sets it under ``[policy.NAME.FAMILY]`` and the engine reads
    it in ``request.switches`` (``allow`` keeps the content, ``sanitise`` removes it,
    ``disallow`` blocks the file when the content is present). Names are lower-case
    identifiers. A built-in family may be given more switches (for an engine that
    replaces a built-in one); the built-in engines ignore them. Read once, when the
    settings are loaded: a profile naming a switch no installed plugin declares is
    refused, as a misspelled key is.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def gicap_detect_file_type(head: bytes, path: str | None, declared: str | None) -> FileType | None:
    """Tell the real type of a file from its bytes.

    :param head: the first bytes of the file (at least 4 KiB when the file is that long).
    :param path: the whole file on disk when available (containers may be looked
        into: a .docx is not "a zip"), else ``None`` (at preview time).
    :param declared: the HTTP ``Content-Type`` or file name, a hint only: never decide
        from it alone.
    :returns: a :class:`FileType`, or ``None`` to let the next detector try. The first
        non-``None`` answer wins; gicap's built-in detector runs last.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def gicap_disarm(request: DisarmRequest) -> DisarmResult | None:
    """Disarm one file of a type this plugin claims.

    Runs in an isolated worker process with a time and memory limit. Read
    ``request.source``, honour every switch in ``request.switches`` (``allow``: keep,
    ``sanitise``: remove, ``disallow``: return ``blocked`` when present), and write the
    rebuilt file to ``request.destination``.

    :returns: a :class:`DisarmResult`, or ``None`` when this plugin does not handle
        ``request.file_type`` (the next plugin is asked). Raising is treated as
        ``unprocessable`` for that file.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def gicap_preview_decision(
    service: str,
    file_type: FileType | None,
    policy: Any,
    http_status: int | None,
    attachment: bool,
    supported_types: frozenset[str],
) -> str | None:
    """Decide from the preview alone, before the rest of the body is read.

    :param service: the ICAP service name.
    :param file_type: the type guessed from the preview bytes (``None`` when they do not
        tell, e.g. a compressed body).
    :param policy: the :class:`gicap.cdr.policy.Profile` of the transaction.
    :param http_status: the encapsulated HTTP status (RESPMOD) or ``None`` (REQMOD).
    :param attachment: whether the message is a download/upload of a file
        (``Content-Disposition: attachment`` or a file name) rather than a page.
    :param supported_types: the file types some engine plugin claims.
    :returns: ``"relay"`` to let the message through unchanged at once (ICAP 204), or
        ``None`` to read the whole body. (Blocking always waits for the whole body, so a
        guess from a few bytes never blocks a file.)
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def gicap_build_response(report: Any, transaction: Any) -> Any:
    """Build the HTTP message to return for a finished disarm.

    :param report: the :class:`gicap.cdr.report.FileReport` (outcome, actions, file id).
    :param transaction: the :class:`gicap.services.base.Transaction`.
    :returns: a :class:`gicap.services.base.Modified` / ``Unmodified`` outcome, or
        ``None`` for the next implementation (the built-in one answers last).
    """
    raise NotImplementedError


@hookspec
def gicap_transaction_finished(record: dict[str, Any]) -> None:
    """Observe a finished CDR transaction (logging, metrics). Return value ignored.

    :param record: file id, service, profile, method, URL, detected type, actions,
        outcome, sizes and durations.
    """
