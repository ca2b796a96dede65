"""Settings: dynaconf reads ``settings.toml`` and ``GICAP_<SECTION>__<KEY>`` variables;
everything is validated once, before any socket is bound, and turned into frozen
dataclasses that the rest of the code receives.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from dynaconf import Dynaconf, ValidationError, Validator

from gicap.cdr.policy import Policy, PolicyError, build_policy
from gicap.tls.flags import FLAGS
from gicap.tls.settings import DEFAULT_CIPHERS, CertificateSettings

SYSTEM_SETTINGS = Path("/etc/gicap/settings.toml")
#: The settings file shipped at the top of the project.
SHIPPED_SETTINGS = Path(__file__).resolve().parent.parent / "settings.toml"
#: The name operators know from the product documentation, without our prefix.
LEGACY_FLAGS_ENV = "CERTIFICATE__VerificationFlags"
_CRL_FLAGS = FLAGS["CRL_CHECK"] | FLAGS["CRL_CHECK_ALL"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: The sections of the settings (a TOML table each, ``GICAP_<SECTION>__<KEY>``).
SECTIONS = ("server", "logging", "certificate", "cdr", "metrics", "policy")
LOG_FORMATS = ("text", "json")


class SettingsError(Exception):
    """The settings are invalid; the message names the key and the expected form."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "0.0.0.0"
    port: int = 1344
    secure_port: int = 11344
    workers: int = 0
    max_connections: int = 1000
    drain_timeout: float = 30
    header_timeout: float = 10
    body_timeout: float = 300
    idle_timeout: float = 75
    handshake_timeout: float = 10
    max_header_bytes: int = 262144
    max_line_bytes: int = 8192
    max_chunk_size: int = 64 * 1024 * 1024
    spool_threshold: int = 1024 * 1024
    spool_dir: str = ""
    options_ttl: int = 3600
    preview_size: int = 4096

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    #: "text" (one line per event, key=value details) or "json" (one object per line).
    format: str = "text"
    #: Write the log to this file instead of stderr ("" = stderr, which journald reads).
    file: str = ""


@dataclass(frozen=True)
class MetricsSettings:
    host: str = "127.0.0.1"
    #: Port of the /metrics, /healthz and /readyz endpoint; 0 = no endpoint, no metrics.
    port: int = 9090


@dataclass(frozen=True)
class CDRSettings:
    #: Disarm worker processes per server worker process.
    workers: int = 2
    timeout: float = 30
    memory_limit_mb: int = 1024
    cpu_limit_seconds: int = 60
    max_file_size: int = 100 * 1024 * 1024
    file_id_header: bool = True
    default_profile: str = "default"


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    certificate: CertificateSettings = field(default_factory=CertificateSettings)
    cdr: CDRSettings = field(default_factory=CDRSettings)
    policy: Policy = field(default_factory=Policy)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    #: The file the settings came from ("" for built-in defaults only).
    source: str = ""
    #: A "<name>.local.toml" beside it, merged over it ("" when there is none).
    local_source: str = ""

    def describe_source(self) -> str:
        if not self.source:
            return "built-in defaults"
        return self.source + (f" and {self.local_source}" if self.local_source else "")

    def as_dict(self) -> dict[str, Any]:
        out = {
            k: asdict(v)
            for k, v in (
                ("server", self.server),
                ("logging", self.logging),
                ("certificate", self.certificate),
                ("cdr", self.cdr),
                ("metrics", self.metrics),
            )
        }
        out["policy"] = {n: p.as_dict() for n, p in self.policy.profiles.items()}
        out["source"] = self.source
        out["local_source"] = self.local_source
        return out


def _int(lo: int, hi: int | None = None) -> tuple[Callable[[Any], bool], str]:
    def check(v: Any) -> bool:
        return (
            isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)
        )

    return check, f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None else "")


def _num(lo: float) -> tuple[Callable[[Any], bool], str]:
    def check(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and v > lo

    return check, f"a number of seconds > {lo:g}"


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


# One list: every key, its default and the form it must have.
_PORT = _int(0, 65535)
SCHEMA: list[tuple[str, Any, Callable[[Any], bool], str]] = [
    ("server.host", "0.0.0.0", _str, "a host name or IP address"),
    ("server.port", 1344, *_PORT),
    ("server.secure_port", 11344, *_PORT),
    ("server.workers", 0, *_int(0, 256)),
    ("server.max_connections", 1000, *_int(1)),
    ("server.drain_timeout", 30, *_num(0)),
    ("server.header_timeout", 10, *_num(0)),
    ("server.body_timeout", 300, *_num(0)),
    ("server.idle_timeout", 75, *_num(0)),
    ("server.handshake_timeout", 10, *_num(0)),
    ("server.max_header_bytes", 262144, *_int(1024)),
    ("server.max_line_bytes", 8192, *_int(256)),
    ("server.max_chunk_size", 64 * 1024 * 1024, *_int(1)),
    ("server.spool_threshold", 1024 * 1024, *_int(0)),
    ("server.spool_dir", "", _str, "a directory path or an empty string"),
    ("server.options_ttl", 3600, *_int(1)),
    ("server.preview_size", 4096, *_int(0)),
    ("logging.level", "INFO", lambda v: str(v).upper() in LOG_LEVELS, " | ".join(LOG_LEVELS)),
    ("logging.format", "text", lambda v: str(v).lower() in LOG_FORMATS, '"text" or "json"'),
    ("logging.file", "", _str, "a file path or an empty string"),
    ("metrics.host", "127.0.0.1", _str, "a host name or IP address"),
    ("metrics.port", 9090, *_PORT),
    ("certificate.certfile", CertificateSettings.certfile, _str, "a file path"),
    ("certificate.keyfile", CertificateSettings.keyfile, _str, "a file path"),
    ("certificate.cafile", CertificateSettings.cafile, _str, "a file path or an empty string"),
    ("certificate.crlfile", "", _str, "a file path or an empty string"),
    ("certificate.require_client_cert", True, _bool, "true or false"),
    ("certificate.min_version", "1.2", lambda v: str(v) in ("1.2", "1.3"), '"1.2" or "1.3"'),
    ("certificate.ciphers", DEFAULT_CIPHERS, _str, "an OpenSSL cipher string"),
    (
        "certificate.VerificationFlags",
        "",
        lambda v: isinstance(v, str | int),
        "flag names joined by | or , or an integer mask",
    ),
    (
        "certificate.allowed_clients",
        [],
        lambda v: isinstance(v, list | str),
        "a list of certificate names",
    ),
    ("certificate.accept_icap_scheme", True, _bool, "true or false"),
    ("certificate.watch_interval", 0.5, *_num(0)),
    ("cdr.workers", 2, *_int(1, 64)),
    ("cdr.timeout", 30, *_num(0)),
    (
        "cdr.memory_limit_mb",
        1024,
        lambda v: isinstance(v, int) and not isinstance(v, bool) and (v == 0 or v >= 128),
        "0 (no limit) or an integer >= 128",
    ),
    ("cdr.cpu_limit_seconds", 60, *_int(0)),
    ("cdr.max_file_size", 100 * 1024 * 1024, *_int(1)),
    ("cdr.file_id_header", True, _bool, "true or false"),
    ("cdr.default_profile", "default", _str, "a profile name"),
    ("certificate.expiry_warning_days", 30, *_int(0)),
]


def default_settings_path() -> Path | None:
    if SYSTEM_SETTINGS.exists():
        return SYSTEM_SETTINGS
    if SHIPPED_SETTINGS.exists():
        return SHIPPED_SETTINGS
    return None


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read, validate and freeze the settings. Raises :class:`SettingsError`."""
    env = os.environ if environ is None else environ
    for name in (
        "SETTINGS_FILE_FOR_DYNACONF",
        "SETTINGS_FILES_FOR_DYNACONF",
        "INCLUDES_FOR_DYNACONF",
    ):
        if env.get(name):
            raise SettingsError(f"{name} is set: gicap reads its settings from --settings only")
    chosen = Path(path) if path else default_settings_path()
    if chosen is not None and not chosen.is_file():
        raise SettingsError(f"settings file {chosen} does not exist")
    # (absolute: dynaconf looks a relative name up from the program's own folder
    # first, and found the shipped settings.toml for "settings.toml")
    files = [str(chosen.resolve())] if chosen else []
    # dynaconf reads os.environ itself; a private copy keeps tests independent.
    saved = dict(os.environ)
    try:
        if environ is not None:
            os.environ.clear()
            os.environ.update(environ)
        dyn = Dynaconf(
            envvar_prefix="GICAP",
            settings_files=files,
            environments=False,
            load_dotenv=False,
            merge_enabled=True,
        )
        for key, default, check, expected in SCHEMA:
            dyn.validators.register(
                Validator(key, default=default),
                Validator(
                    key,
                    condition=check,
                    messages={"condition": f"{key} must be {expected}, got {{value!r}}"},
                ),
            )
        try:
            dyn.validators.validate_all()
        except ValidationError as exc:
            raise SettingsError(f"invalid setting: {exc}") from None
        data = {
            section: {k.lower(): v for k, v in (dyn.get(section) or {}).items()}
            for section in SECTIONS[:-1]
        }
        policy_raw = _plain(dyn.get("policy") or {})
        _check_top_level(chosen, env)
    finally:
        if environ is not None:
            os.environ.clear()
            os.environ.update(saved)
    legacy = [name for name in env if name.upper() == LEGACY_FLAGS_ENV.upper()]
    if len(legacy) > 1:
        raise SettingsError(f"{' and '.join(sorted(legacy))} both set: keep one")
    if legacy:  # (the name of the product documentation: over any other)
        data["certificate"]["verificationflags"] = env[legacy[0]]
        data["certificate"].pop("verification_flags", None)
    settings = _freeze(data, policy_raw, str(chosen) if chosen else "")
    if chosen is not None:
        # dynaconf merges "<name>.local.toml" beside the file: said where it is read
        local = chosen.with_name(f"{chosen.stem}.local{chosen.suffix}")
        if local.is_file():
            settings = replace(settings, local_source=str(local))
    return settings


def _check_top_level(path: Path | None, env: Mapping[str, str]) -> None:
    """Refuse what is no section: a table of the file, or a ``GICAP_`` variable
    written with one underscore after its section (``GICAP_SERVER_PORT``) or naming a
    misspelled one. (Other ``GICAP_`` variables are not settings: left alone.)"""
    import difflib
    import tomllib

    for name in env:
        if name.upper().startswith("GICAP_") and not name.startswith("GICAP_"):
            if name[len("GICAP_") :].split("__")[0].lower() in SECTIONS:
                raise SettingsError(
                    f"environment variable {name}: the prefix is GICAP_, in capitals"
                )
    keys = [name[len("GICAP_") :] for name in env if name.startswith("GICAP_")]
    if path is not None:
        try:
            keys += list(tomllib.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            pass  # (dynaconf read it: what it reports stands)
    for key in keys:
        name = str(key).lower()
        if name.split("__")[0] in SECTIONS:
            continue
        variable = f"GICAP_{key}"
        section = next((sec for sec in SECTIONS if name.startswith(sec + "_")), None)
        if section is not None:
            rest = name[len(section) + 1 :].lstrip("_")
            hint = f"GICAP_{section.upper()}__{rest.upper()}"
            raise SettingsError(
                f"unknown setting {variable if variable in env else key!r}: a section and its "
                f"key are joined by two underscores ({hint})"
            )
        near = difflib.get_close_matches(name.split("__")[0], SECTIONS, n=1, cutoff=0.75)
        if variable not in env or near:
            where = f"environment variable {variable}" if variable in env else f"[{key}]"
            raise SettingsError(
                f"unknown setting {where}"
                + (f" (did you mean {near[0]}?)" if near else "")
                + f"; the sections are {', '.join(SECTIONS)}"
            )


def _plain(value: Any) -> Any:
    """dynaconf boxes to plain dicts, keys lower-cased (TOML and env spell them freely)."""
    if isinstance(value, Mapping):
        return {str(k).lower(): _plain(v) for k, v in value.items()}
    return value


def machine_problems(settings: Settings) -> list[str]:
    """What these settings need of the machine they run on and do not find (checked
    at start-up and by ``gicap check``, not when settings are loaded elsewhere)."""
    problems = []
    spool = settings.server.spool_dir
    if spool and (not Path(spool).is_dir() or not os.access(spool, os.W_OK | os.X_OK)):
        problems.append(f"server.spool_dir {spool} is not a directory this user can write to")
    return problems


def _known(section: str) -> set[str]:
    """The keys of a section (lower case) in :data:`SCHEMA`."""
    return {k.split(".")[1].lower() for k, *_ in SCHEMA if k.startswith(section + ".")}


def _section(data: dict[str, dict[str, Any]], section: str) -> dict[str, Any]:
    """A section's values, refused when it holds a key the schema does not know."""
    known = _known(section)
    unknown = sorted(set(data[section]) - known)
    if unknown:
        import difflib

        hints = []
        for key in unknown:
            near = difflib.get_close_matches(key, sorted(known), n=1)
            hints.append(f"{key} (did you mean {near[0]}?)" if near else key)
        raise SettingsError(f"unknown setting(s) in [{section}]: {', '.join(hints)}")
    return {k: v for k, v in data[section].items() if k in known}


def _freeze(data: dict[str, dict[str, Any]], policy_raw: dict[str, Any], source: str) -> Settings:
    cert = dict(data["certificate"])
    # (VerificationFlags, the name of the product documentation, or verification_flags)
    flags = cert.pop("verificationflags", "")
    if "verification_flags" in cert:
        if flags != "" and str(flags) != str(cert["verification_flags"]):
            raise SettingsError(
                "certificate.VerificationFlags and certificate.verification_flags disagree: "
                "keep one"
            )
        flags = cert.pop("verification_flags")
    cert["verificationflags"] = flags
    data = {**data, "certificate": cert}
    server = ServerSettings(**_section(data, "server"))
    if server.port == 0 and server.secure_port == 0:
        raise SettingsError("server.port and server.secure_port cannot both be 0")
    cert = _section(data, "certificate")
    flags = cert.pop("verificationflags", "")
    cert["verification_flags"] = flags if flags != "" else 0
    cert["min_version"] = str(cert.get("min_version", "1.2"))
    try:
        certificate = CertificateSettings.from_mapping(cert)
    except ValueError as exc:
        raise SettingsError(f"invalid setting: {exc}") from None
    if certificate.verification_flags & _CRL_FLAGS and not certificate.crlfile:
        raise SettingsError(
            "certificate.VerificationFlags asks for CRL checking but certificate.crlfile is "
            "not set: every client would be refused"
        )
    _section(data, "logging")
    _section(data, "metrics")
    _section(data, "cdr")
    lg = data["logging"]
    logging_settings = LoggingSettings(
        level=str(lg.get("level", "INFO")).upper(),
        format=str(lg.get("format", "text")).lower(),
        file=str(lg.get("file", "")),
    )
    m = data["metrics"]
    metrics = MetricsSettings(host=str(m.get("host", "127.0.0.1")), port=int(m.get("port", 9090)))
    cdr = CDRSettings(
        **{k: v for k, v in data["cdr"].items() if k in CDRSettings.__dataclass_fields__}
    )
    from gicap.plugins import installed_policy_switches

    try:
        policy = build_policy(policy_raw, cdr.default_profile, installed_policy_switches())
    except PolicyError as exc:
        raise SettingsError(f"invalid setting: {exc}") from None
    ports = {"server.port": server.port, "server.secure_port": server.secure_port}
    ports["metrics.port"] = metrics.port
    used: dict[int, str] = {}
    for name, port in ports.items():
        if port and port in used:
            raise SettingsError(f"{used[port]} and {name} are both {port}: give each its own")
        used[port] = name
    return Settings(server, logging_settings, certificate, cdr, policy, metrics, source)
