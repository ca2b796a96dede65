"""``resp-cdr-service`` (downloads, RESPMOD) and ``req-cdr-service`` (uploads, REQMOD).

For each message: choose the policy profile (``?profile=NAME``), let the preview
decide what it can, then hand the whole file to an isolated worker process that
detects its type and runs the engine plugin that claims it, and answer with the
rebuilt file, the original, or a block page. Whatever goes wrong with a file gives
it the policy's outcome (block by default), never a dropped connection.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import gicap
from gicap.cdr import multipart
from gicap.cdr.detect import (
    SCRIPT_TYPES,
    declared_name,
    file_names,
    mismatch,
    opened_as,
    opened_as_saved,
    telling_name,
    url_segment,
)
from gicap.cdr.policy import Profile
from gicap.cdr.report import BLOCKED, REBUILT, RELAYED, UNMODIFIED, FileReport
from gicap.cdr.types import FileType
from gicap.obs import metrics
from gicap.services.base import PREVIEW_KEPT, Outcome, Refused, Service, Transaction, Unmodified

if TYPE_CHECKING:
    from gicap.cdr.runner import CDRRunner
    from gicap.config import Settings
    from gicap.plugins import PluginHost

log = logging.getLogger("gicap.cdr")

PASS_STATUSES = frozenset({204, 304})
COPY_SIZE = 256 * 1024


#: Types the engines always write in UTF-8 (markup a browser renders).
_UTF8_OUTPUTS = frozenset({"html", "svg"})


class CDRService(Service):
    def __init__(self, name: str, method: str, settings: Settings, host: PluginHost) -> None:
        self.name = name
        self.method = method
        self.description = f"gicap CDR for {'downloads' if method == 'RESPMOD' else 'uploads'}"
        self.settings = settings
        self.host = host
        self.runner: CDRRunner | None = None
        self.supported: frozenset[str] = frozenset(
            t for types in host.manager.hook.gicap_file_types() for t in (types or ())
        )

    def config_fingerprint(self) -> str:
        c = self.settings.cdr
        return (
            f"{self.settings.policy.fingerprint()}|{c.max_file_size}|{c.file_id_header}|"
            f"{','.join(sorted(self.supported))}|{self.host.fingerprint()}"
        )

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        from gicap.cdr.runner import CDRRunner, RunnerLimits

        c = self.settings.cdr
        self.runner = CDRRunner(
            "gicap.cdr.job:run_job",
            c.workers,
            RunnerLimits(
                timeout=c.timeout, memory_mb=c.memory_limit_mb, cpu_seconds=c.cpu_limit_seconds
            ),
            initializer="gicap.cdr.job:init_worker",
            on_event=_runner_event,
        )
        self.runner.start()

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()

    # ------------------------------------------------------------ ICAP hooks
    def profile_for(self, query: str) -> Profile:
        name = (parse_qs(query).get("profile") or [None])[0]
        return self.settings.policy.profile(name)

    def check_request(self, head: Any) -> Refused | None:
        message = head.http_response if self.method == "RESPMOD" else head.http_request
        if head.has_body and message is None and head.method != "OPTIONS":
            # (an OPTIONS may carry an opt-body, RFC 3507 4.10.1: it is not a message)
            part = "res-hdr" if self.method == "RESPMOD" else "req-hdr"
            return Refused(400, f"a {self.method} body without its HTTP head ({part})")
        try:
            self.profile_for(head.query)
        except KeyError:
            name = (parse_qs(head.query).get("profile") or [""])[0]
            known = ", ".join(sorted(self.settings.policy.profiles))
            return Refused(400, f"unknown policy profile {name!r}; profiles: {known}")
        return None

    def on_preview(self, txn: Transaction) -> Outcome | None:
        head = txn.head
        if self._passes_untouched(txn):
            return Unmodified()
        asked = max(self.settings.server.preview_size, 1)
        if not txn.preview_complete and len(txn.preview) < min(asked, PREVIEW_KEPT):
            # A shorter preview than asked for (Preview: 0, say) does not show what the
            # file is (its magic bytes): judged whole, as the same bytes previewed are.
            # (An executable served as text/html was relayed as a page at Preview: 0.)
            return None
        profile = self.profile_for(head.query)
        message = head.http_response if self.method == "RESPMOD" else head.http_request
        if self.method == "REQMOD" and message is not None:
            if multipart.is_multipart(message.headers.get("Content-Type")):
                return None  # (its parts are judged one by one: see respond)
        encoded = message is not None and _content_encoding(message) is not None
        file_type = None if encoded else self._guess(txn.preview, message)
        upload = self.method == "REQMOD"
        # (an upload is a file when named as one; a page's subresource is judged as a
        # navigation to it would be: a cache may serve it to one)
        saved = (
            _saved_names(message, head.http_request, navigation=True, upload=upload)
            if message is not None
            else None
        )
        try:
            decision = self.host.manager.hook.gicap_preview_decision(
                service=self.name,
                file_type=file_type,
                policy=profile,
                http_status=head.http_response.status if head.http_response else None,
                attachment=message is not None
                and (_names_a_file(saved) if upload else _is_attachment(message, saved)),
                supported_types=self.supported,
            )
        except Exception:
            # A broken decision plugin costs a full read, never the transaction.
            log.exception("a gicap_preview_decision hook failed; reading the whole body")
            decision = None
        if decision == "relay" and message is not None and file_type is not None:
            # A file a desktop or browser would open as another type of text (an
            # executable saved as update.hta) is a polyglot however the policy
            # relays its type: judged whole (see _disarm), never relayed here.
            opened = opened_as_saved(saved, _content_type(message) or None) if saved else None
            if mismatch(file_type.name, opened):
                decision = None
        if decision == "relay":
            txn.log_fields.update(
                outcome=RELAYED, type=file_type.name if file_type else "-", at="preview"
            )
            return Unmodified()
        return None

    def _names(self, head: Any, message: Any) -> tuple[list[str] | None, list[str] | None]:
        """The names the file is saved under, and those a navigation to its address
        saves it under (the same but for what a page fetches: see _saved_names)."""
        upload = self.method == "REQMOD"
        saved = _saved_names(message, head.http_request, upload=upload)
        if upload or not _subresource(head.http_request):
            return saved, saved
        return saved, _saved_names(message, head.http_request, navigation=True)

    def _relayed_page(
        self,
        data: bytes,
        message: Any,
        saved: list[str] | None,
        navigation: list[str] | None,
        profile: Profile,
    ) -> FileType | None:
        """The type of a web page the policy relays (``web_pages = "relay"``), judged
        from the body's first bytes ``data`` and the message's headers (``saved``,
        ``navigation``: :meth:`_names`); None when the body is no such page. (A
        content-encoded body is the caller's: judged once decoded.)"""
        if profile.fallback("web_pages") != "relay":
            return None
        guess = self._guess(data, message)
        upload = self.method == "REQMOD"
        if (
            guess is not None
            and guess.family == "html"
            and not (_names_a_file(saved) if upload else _is_attachment(message, navigation))
        ):
            return guess
        return None

    def body_over_limit(self, txn: Transaction, head: bytes) -> bool:
        """Drop the body past the limit (see body_limit)? Not a page the policy relays
        (its first bytes ``head`` tell), nor a partial (206) one, which goes to the
        ``unprocessable`` rule."""
        response = txn.head.http_response
        if response is not None and response.status == 206:
            return False
        try:
            profile = self.profile_for(txn.head.query)
        except KeyError:
            return False
        message = txn.head.http_response if self.method == "RESPMOD" else txn.head.http_request
        if message is None or _content_encoding(message):
            return True
        saved, navigation = self._names(txn.head, message)
        return self._relayed_page(head[:4096], message, saved, navigation, profile) is None

    def body_limit(self, txn: Transaction) -> int | None:
        """``cdr.max_file_size`` when the profile blocks larger files: such a body is
        refused whatever it holds, and is not written to disk past that size (a client
        sending 50 GB filled the spool directory before the refusal). None for what
        passes untouched (HEAD answers, 204/304) and when the oversize rule relays."""
        head = txn.head
        if self._bodiless(head):
            return None
        try:
            profile = self.profile_for(head.query)
        except KeyError:
            return None
        if profile.fallback("oversize") != "block":
            return None
        limit = self.settings.cdr.max_file_size
        message = head.http_response if self.method == "RESPMOD" else head.http_request
        if message is not None and _content_encoding(message):
            # (judged by its decoded size: a compressed body this much larger cannot
            # decode to less than the limit)
            return limit + limit // 100 + 65536
        return limit

    def respond(self, txn: Transaction) -> Outcome:
        if self._passes_untouched(txn):
            return Unmodified()
        profile = self.profile_for(txn.head.query)
        workdir = Path(
            tempfile.mkdtemp(prefix="gicap-cdr-", dir=self.settings.server.spool_dir or None)
        )
        started = time.monotonic()
        try:
            if txn.body is not None and txn.body.overflowed:
                # (not kept past the limit: see body_limit; a page that large too)
                report = self._new_report(txn, profile)
                report.size_in = txn.body.size
                limit = self.settings.cdr.max_file_size
                oversize = self._fallback(report, profile, "oversize", f"larger than {limit} bytes")
                return self._answer(oversize, txn, started)
            if self.method == "REQMOD" and txn.head.http_request is not None:
                content_type = txn.head.http_request.headers.get("Content-Type")
                if multipart.is_multipart(content_type):
                    return self._multipart(txn, profile, content_type or "", workdir)
            report = self._process(txn, profile, workdir)
            return self._answer(report, txn, started)
        finally:
            # Work files go whatever the outcome; a rebuilt body stays readable
            # through its open file object until it has been sent.
            shutil.rmtree(workdir, ignore_errors=True)

    # ------------------------------------------------------------ the pipeline
    def _passes_untouched(self, txn: Transaction) -> bool:
        """HEAD answers, 204/304 and empty bodies have nothing to disarm."""
        head = txn.head
        if not head.has_body or self._bodiless(head):
            return True
        return txn.body is not None and txn.body.size == 0

    def _bodiless(self, head: Any) -> bool:
        """An answer HTTP says has no body: to a HEAD, a 204 or a 304."""
        if self.method != "RESPMOD":
            return False
        if head.http_request is not None and head.http_request.method == "HEAD":
            return True
        return head.http_response is not None and head.http_response.status in PASS_STATUSES

    def _guess(self, data: bytes, message: Any) -> FileType | None:
        declared = message.headers.get("Content-Type") if message is not None else None
        try:
            return self.host.manager.hook.gicap_detect_file_type(
                head=data[:65536], path=None, declared=declared
            )
        except Exception:
            log.exception("file type detection failed")
            return None

    def _new_report(self, txn: Transaction, profile: Profile) -> FileReport:
        head = txn.head
        name = ""
        if head.http_request is not None:
            name = head.http_request.target
        return FileReport(
            file_id=str(uuid.uuid4()),
            outcome=BLOCKED,
            profile=profile.name,
            name=name,
            file_id_header=self.settings.cdr.file_id_header,
        )

    def _process(self, txn: Transaction, profile: Profile, workdir: Path) -> FileReport:
        head = txn.head
        report = self._new_report(txn, profile)
        message = head.http_response if self.method == "RESPMOD" else head.http_request
        assert txn.body is not None and message is not None
        report.size_in = txn.body.size
        if head.http_response is not None and head.http_response.status == 206:
            return self._fallback(
                report,
                profile,
                "unprocessable",
                "partial content (HTTP 206): only a fragment of the file",
            )
        encoding = _content_encoding(message)
        saved, navigation = self._names(head, message)
        subresource = self.method == "RESPMOD" and _subresource(head.http_request)
        if subresource and navigation is not None:
            # What a page uses goes by what it is, but a navigation to its address
            # would save it, and a cache may serve this answer to one: it is sent
            # again whatever the outcome, varying by what fetched it.
            report.vary = "Sec-Fetch-Dest"
        if not encoding:
            guess = self._relayed_page(txn.body.head(4096), message, saved, navigation, profile)
            if guess is not None:
                report.file_type = guess.name
                report.outcome = RELAYED
                return report
        if txn.body.size > self.settings.cdr.max_file_size and not encoding:
            return self._fallback(
                report, profile, "oversize", f"larger than {self.settings.cdr.max_file_size} bytes"
            )
        source = workdir / "original"
        _copy_spool(txn.body, source)
        content_type = _content_type(message) or None
        opened = _opened(content_type, saved, head.http_request)
        return self._disarm(
            report,
            profile,
            source,
            workdir / "rebuilt",
            encoding,
            _declared(content_type, saved),
            opened,
            # (what a page uses is never opened as that text, but a cache may serve it
            # to a later navigation: its Content-Type is set to what it is)
            opened_as(content_type) if _subresource(head.http_request) else None,
        )

    def disarm_path(self, path: Path, workdir: Path, profile: Profile) -> FileReport:
        """Disarm a file on disk (``gicap disarm``): the same engine and policy."""
        report = FileReport(
            file_id=str(uuid.uuid4()),
            outcome=BLOCKED,
            profile=profile.name,
            name=path.name,
            file_id_header=False,
        )
        report.size_in = path.stat().st_size
        if report.size_in > self.settings.cdr.max_file_size:
            return self._fallback(
                report, profile, "oversize", f"larger than {self.settings.cdr.max_file_size} bytes"
            )
        source = workdir / "original"
        shutil.copyfile(path, source)
        return self._disarm(
            report, profile, source, workdir / "rebuilt", None, path.name, opened_as(path.name)
        )

    def _disarm(
        self,
        report: FileReport,
        profile: Profile,
        source: Path,
        dest: Path,
        encoding: str | None,
        declared: str | None,
        opened: str | None,
        served_as: str | None = None,
    ) -> FileReport:
        assert self.runner is not None, "CDR service used before start()"
        payload = {
            "source": str(source),
            "dest": str(dest),
            "encoding": encoding,
            "declared": declared,
            "opened": opened,
            "max_file_size": self.settings.cdr.max_file_size,
            "profile": _profile_data(profile),
            "profile_name": profile.name,
        }
        result = self.runner.submit(payload)
        if not result.ok:
            report.engine_outcome = result.failure
            log.warning("disarm of %s failed: %s %s", report.file_id, result.failure, result.detail)
            return _varied(
                self._fallback(
                    report,
                    profile,
                    "unprocessable",
                    f"processing failed ({result.failure}: {result.detail})",
                ),
                source,
            )
        d = result.value
        outcome = d["outcome"]
        report.engine_outcome = outcome
        ftype = d.get("file_type") or {}
        report.file_type = ftype.get("name", "")
        report.actions = _bounded(list(d.get("actions") or []))
        reason = d.get("reason", "")[:MAX_DETAIL]
        if outcome == "rebuilt":
            out = d.get("output_type")
            if out and out.get("name") != report.file_type:
                report.output_type = out["name"]
                report.content_type = out["mime"]
                report.old_extension = ftype.get("extension", "")
                report.new_extension = out["extension"]
            written = out or ftype
            if written.get("name") in _UTF8_OUTPUTS:
                # The engine wrote UTF-8 and says so in the document, but a browser takes
                # the charset of the HTTP header first: one the origin gave (ISO-2022-JP,
                # say) would read the rebuilt bytes as other markup.
                report.content_type = f"{written.get('mime') or 'text/html'}; charset=utf-8"
            if mismatch(written.get("name", ""), served_as):
                report.content_type, report.nosniff = written.get("mime", ""), True
            report.body = open(dest, "rb")  # noqa: SIM115 - closed after sending
            report.size_out = os.fstat(report.body.fileno()).st_size
            report.outcome = REBUILT
            return report
        if outcome == "unmodified":
            corrected = mismatch(report.file_type, served_as)
            if corrected:
                # delivered as it is, but under the Content-Type of what it is
                report.content_type, report.nosniff = ftype.get("mime", ""), True
                report.body = open(d.get("decoded_path") or source, "rb")  # noqa: SIM115
                report.size_out = os.fstat(report.body.fileno()).st_size
                report.outcome = REBUILT
                return report
            report.outcome = UNMODIFIED
            return _varied(report, source)
        if outcome == "blocked":
            report.outcome = BLOCKED
            report.reason = reason or "content the policy disallows is present"
            return report
        case = outcome if outcome in ("unsupported", "encrypted", "oversize") else "unprocessable"
        return _varied(self._fallback(report, profile, case, reason or outcome), source)

    def _fallback(self, report: FileReport, profile: Profile, case: str, reason: str) -> FileReport:
        report.engine_outcome = report.engine_outcome or case
        report.reason = f"{case}: {reason}"
        report.outcome = RELAYED if profile.fallback(case) == "relay" else BLOCKED
        return report

    def _answer(self, report: FileReport, txn: Transaction, started: float) -> Outcome:
        cdr_ms = round((time.monotonic() - started) * 1000, 1)
        txn.log_fields.update(
            file_id=report.file_id,
            profile=report.profile,
            type=report.file_type or "-",
            outcome=report.outcome,
            engine=report.engine_outcome or "-",
            actions=_actions_per_switch(report.actions) or "-",
        )
        if report.reason:
            txn.log_fields["reason"] = report.reason
        txn.log_fields["cdr_ms"] = cdr_ms
        record = {
            **report.as_dict(),
            "service": self.name,
            "method": txn.head.method,
            "url": report.name,
            "client": txn.client_address,
            "cdr_ms": cdr_ms,
        }
        try:
            self.host.manager.hook.gicap_transaction_finished(record=record)
        except Exception:
            log.exception("a gicap_transaction_finished hook failed")
        try:
            return self.host.manager.hook.gicap_build_response(report=report, transaction=txn)
        except Exception:
            # Fail closed: a response plugin that breaks blocks the file, with a page.
            log.exception("a gicap_build_response hook failed for %s", report.file_id)
            if report.body is not None:
                report.body.close()
            report.outcome = BLOCKED
            report.reason = "internal error while building the response"
            from gicap.cdr.response import blocked_response

            return blocked_response(report, txn)

    def _multipart(
        self, txn: Transaction, profile: Profile, content_type: str, workdir: Path
    ) -> Outcome:
        """An upload of several parts (a form, multipart/mixed...): every file part,
        in nested multipart parts too, is disarmed on its own; the body is sent again
        with the parts rebuilt."""
        started = time.monotonic()
        assert txn.body is not None and txn.head.http_request is not None
        report = self._new_report(txn, profile)
        report.size_in = txn.body.size
        if txn.body.size > self.settings.cdr.max_file_size:
            return self._answer(
                self._fallback(report, profile, "oversize", "upload larger than the limit"),
                txn,
                started,
            )
        if _content_encoding(txn.head.http_request):
            # (parts are split from the bytes as sent: a server that inflates the body
            # first reads other parts, a file split by the compression included)
            reason = "a multipart upload sent with a Content-Encoding"
            refused = self._fallback(report, profile, "unprocessable", reason)
            return self._answer(refused, txn, started)
        types: list[str] = []
        counter = [0, 0]  # files, parts (nested ones included)
        try:
            form = multipart.parse(txn.body.getvalue(), multipart.boundary_of(content_type))
            counter[1] = len(form.parts)
            changed, blocked = self._disarm_parts(
                txn, profile, workdir, form, report, types, counter, depth=0
            )
        except multipart.MultipartError as exc:
            return self._answer(
                self._fallback(report, profile, "unprocessable", str(exc)), txn, started
            )
        if blocked is not None:
            return self._answer(blocked, txn, started)
        report.file_type = ",".join(types) or "-"
        if not changed:
            report.outcome = UNMODIFIED
            return self._answer(report, txn, started)
        body = form.encode()
        rebuilt = workdir / "form"
        rebuilt.write_bytes(body)
        report.body = open(rebuilt, "rb")  # noqa: SIM115 - closed after sending
        report.size_out = len(body)
        report.outcome = REBUILT
        return self._answer(report, txn, started)

    def _disarm_parts(
        self,
        txn: Transaction,
        profile: Profile,
        workdir: Path,
        form: multipart.Multipart,
        report: FileReport,
        types: list[str],
        counter: list[int],
        depth: int,
    ) -> tuple[bool, FileReport | None]:
        """Disarm the file parts of ``form`` (and of the multipart parts in it): whether
        one was rebuilt, and ``report`` as blocked when one is."""
        changed = False
        for part in form.parts:
            content_type = part.headers.get("Content-Type")
            nested = multipart.is_multipart(content_type)
            if not nested and (not part.is_file or not part.content):
                continue
            encoding = (part.headers.get("Content-Transfer-Encoding") or "").strip().lower()
            if encoding not in ("", "7bit", "8bit", "binary"):
                # servers decode it (Go's quoted-printable), this would judge the code
                raise multipart.MultipartError(
                    f"a part is sent in the {encoding!r} transfer encoding"
                )
            if nested:
                if depth >= multipart.MAX_DEPTH:
                    raise multipart.MultipartError(
                        f"multipart parts nested more than {multipart.MAX_DEPTH} deep"
                    )
                inner = multipart.parse(
                    part.content,
                    multipart.boundary_of(content_type),
                    multipart.MAX_PARTS - counter[1],
                )
                counter[1] += len(inner.parts)
                inner_changed, blocked = self._disarm_parts(
                    txn, profile, workdir, inner, report, types, counter, depth + 1
                )
                if blocked is not None:
                    return changed, blocked
                if inner_changed:
                    part.content = inner.encode()
                    changed = True
                continue
            counter[0] += 1
            if counter[0] > MAX_FILE_PARTS:
                # (each is a job of its own: 15,000 parts in 990 KB took 8.6 s)
                raise multipart.MultipartError(f"more than {MAX_FILE_PARTS} files in one upload")
            source = workdir / f"part-{counter[0]}"
            source.write_bytes(part.content)
            sub = self._new_report(txn, profile)
            sub.name = part.filename or ""
            names = part.filenames
            sub = self._disarm(
                sub,
                profile,
                source,
                workdir / f"rebuilt-{counter[0]}",
                None,
                _declared(content_type, names),
                opened_as_saved(names, content_type),
            )
            types.append(sub.file_type or "?")
            report.actions = _bounded(report.actions + sub.actions)
            if sub.outcome == BLOCKED:
                report.reason = f"{part.filename}: {sub.reason}"[:MAX_DETAIL]
                report.file_type = sub.file_type
                report.name = part.filename or report.name
                report.outcome = BLOCKED
                return changed, report
            if sub.outcome == REBUILT and sub.body is not None:
                with sub.body:
                    part.content = sub.body.read()
                changed = True
        return changed, None


#: Files one upload may hold (in nested multipart parts too), as an archive members.
MAX_FILE_PARTS = 1000
#: Actions a report keeps, and characters of each one's detail: a block page, a log
#: line and the transaction record stay small whatever a file holds.
MAX_ACTIONS = 100
MAX_DETAIL = 500


def _bounded(actions: list[dict[str, str]]) -> list[dict[str, str]]:
    """``actions`` with long details cut and, past ``MAX_ACTIONS``, one summing up."""
    out = []
    for action in actions[:MAX_ACTIONS]:
        detail = action.get("detail") or ""
        if len(detail) > MAX_DETAIL:
            action = {**action, "detail": detail[:MAX_DETAIL] + "…"}
        out.append(action)
    if len(actions) > MAX_ACTIONS:
        out.append(
            {"switch": "report", "action": "cut", "detail": f"{len(actions) - MAX_ACTIONS} more"}
        )
    return out


def _varied(report: FileReport, source: Path) -> FileReport:
    """A file delivered as it came (unmodified, or relayed by the policy) that varies
    by what fetched it (``report.vary``: a page's subresource a navigation would save,
    see ``_process``) is sent again, as it came, encoded too, with its own headers and
    the Vary: a 204 would let a cache serve it to a later navigation, which gicap
    judges otherwise."""
    if report.vary and report.outcome in (UNMODIFIED, RELAYED):
        report.echo = True
        report.body = open(source, "rb")  # noqa: SIM115 - closed after sending
        report.size_out = os.fstat(report.body.fileno()).st_size
        report.outcome = REBUILT
    return report


def _content_encoding(message: Any) -> str | None:
    """The codings of every Content-Encoding header, "identity" left out (Firefox
    joins the headers and skips it: "identity" then "deflate" is deflate to it); None
    when there are none. Several are joined with "+", which no decoder takes."""
    codings = [c for c in message.headers.get_list("Content-Encoding") if c != "identity"]
    return "+".join(codings) if codings else None


def _runner_event(kind: str) -> None:
    """The runner replaced a worker or timed a job out: count it (when metrics are on)."""
    recorder = metrics.recorder()
    if recorder is not None:
        recorder.cdr_event(kind)


def _actions_per_switch(actions: list[dict[str, str]]) -> dict[str, str]:
    """{switch: action}; a switch acted on differently (several files of a form or an
    archive) lists its distinct actions joined by ","."""
    out: dict[str, list[str]] = {}
    for a in actions:
        seen = out.setdefault(a.get("switch", "?"), [])
        if a.get("action", "?") not in seen:
            seen.append(a.get("action", "?"))
    return {switch: ",".join(acts) for switch, acts in out.items()}


def _opened(content_type: str | None, saved: list[str] | None, request: Any) -> str | None:
    """The type of text (script, HTML, SVG, CSV: ``detect.OPENED_AS_TEXT``) the
    browser or the desktop reads the download as, whatever it holds: by any name it
    may be saved under (``saved``), else by the Content-Type browsers take; None for
    what a page uses (an image, a script, a style sheet...: ``Sec-Fetch-Dest``),
    which the page reads as what it asked for."""
    if saved is not None:
        return opened_as_saved(saved, content_type)
    if _subresource(request):
        return None
    return opened_as(content_type)


def _subresource(request: Any) -> bool:
    if request is None:
        return False
    return (request.headers.get("Sec-Fetch-Dest") or "").strip().lower() in _SUBRESOURCES


def _declared(content_type: str | None, names: list[str] | None) -> str | None:
    """What a message says its file is, for detection to break ties: a name the
    file is saved under when one names a type (a script's or a CSV file's first:
    see ``telling_name``), since the user's desktop opens the saved file by it
    (Excel a ``.csv`` served as text/plain, Windows Script Host a ``.js``); else
    the ``Content-Type``."""
    name = telling_name(names) if names else None
    return name if name is not None else content_type


#: Content types browsers show (or use) rather than save, besides text, images,
#: audio, video and fonts; of text, the types they save (a spreadsheet, a card).
#: What browsers show when a page is opened at its address; anything else they save
#: (named after the address). Pictures, sound and video they render or play, the
#: documents and data they display (text/*: below).
_SHOWN_TYPES = frozenset(
    """
    image/jpeg image/pjpeg image/jpg image/png image/x-png image/apng image/gif
    image/webp image/bmp image/x-ms-bmp image/x-icon image/vnd.microsoft.icon
    image/x-xbitmap image/avif image/svg+xml
    audio/mpeg audio/mp3 audio/ogg audio/wav audio/wave audio/x-wav audio/vnd.wave
    audio/webm audio/aac audio/flac audio/mp4 audio/x-m4a
    video/mp4 video/webm video/ogg application/ogg
    application/pdf application/json application/ld+json application/manifest+json
    application/xml application/xhtml+xml application/rss+xml application/atom+xml
    application/javascript application/x-javascript application/ecmascript
    """.split()
)
#: Text types browsers save rather than show (Chromium's list): any other text/* is
#: shown.
_SAVED_TEXT = frozenset(
    """
    text/csv text/x-csv text/comma-separated-values text/tab-separated-values text/tsv
    text/calendar text/x-calendar text/vcalendar text/x-vcalendar text/vcard
    text/x-vcard text/x-vcf text/directory text/ldif text/qif text/x-qif text/rtf
    text/ofx text/vnd.sun.j2me.app-descriptor text/x-ms-odc text/x-ms-iqy text/x-ms-rqy
    text/x-ms-contact
    """.split()
)
#: Sec-Fetch-Dest values of what a page uses (a script, a style sheet, a font...):
#: never a download saved to disk.
_SUBRESOURCES = frozenset(
    """
    script style font image audio video track worker sharedworker serviceworker
    manifest xslt audioworklet paintworklet report
    """.split()
)


def _content_type(message: Any) -> str:
    """The media type a browser takes (Fetch's "extract a MIME type"): of every
    Content-Type header, split on commas outside quoted strings, the last value that
    is a type/subtype and not ``*/*``; lower case, without parameters; "" when there
    is none."""
    essence = ""
    for header in message.headers.get_all("Content-Type") or []:
        for value in _COMMA_LIST.findall(header):
            mime = value.split(";", 1)[0].strip(" \t\r\n").lower()
            if _MIME_TYPE.fullmatch(mime) and mime != "*/*":
                essence = mime
    return essence


#: The items of a comma list, a quoted string (with its commas) kept whole.
_COMMA_LIST = re.compile(r'(?:[^,"]|"(?:[^"\\]|\\.)*+"?)++')
_TOKEN = r"[!#$%&'*+.^_`|~0-9a-z-]+"
_MIME_TYPE = re.compile(f"{_TOKEN}/{_TOKEN}")


def _shown(content_type: str) -> bool:
    """Whether a browser shows what it is served as (else it saves it: a picture of
    a type it cannot draw, a font, a WebAssembly module, text/rtf...)."""
    if content_type in _SHOWN_TYPES or not content_type:  # (none: sniffed and shown)
        return True
    return content_type.startswith("text/") and content_type not in _SAVED_TEXT


def _saved_names(
    message: Any, request: Any, *, navigation: bool = False, upload: bool = False
) -> list[str] | None:
    """The names a browser may save a download under, or None when it shows or uses
    it (then its Content-Type decides what it is). A response to a page's request
    for a script, a style sheet, a font, an image... (``Sec-Fetch-Dest``) is used,
    never saved. Else a download is saved when its ``Content-Disposition`` is any
    type but ``inline`` (RFC 6266 treats unknown ones as ``attachment``; the type
    ends at ``;`` or ``,``), or when its Content-Type is not one browsers show; it is
    named by the disposition's file names, else by the last segment of the URL's
    path, and a script's content type adds the script's extension to a name without
    one. ``navigation``: as for a navigation to the address, whatever fetched it;
    ``upload``: an upload, stored under its names whatever its type (a PUT under its
    address's name too)."""
    if _subresource(request) and not (navigation or upload):
        return None
    dispositions = [d.strip() for d in message.headers.get_all("Content-Disposition") or []]
    content_type = _content_type(message)
    kinds = [re.split(r"[;,]", d, maxsplit=1)[0].strip().lower() for d in dispositions if d]
    if not upload and all(kind == "inline" for kind in kinds) and _shown(content_type):
        return None
    # (several dispositions: clients differ on which one they take)
    names = [name for d in dispositions if d for name in file_names(d)]
    if upload and (request is None or request.method.upper() != "PUT"):
        # (a POST's address names the program that takes it, form.pl say, not a file;
        # a PUT's names the file it stores)
        return names
    if not names:
        url = request.target if request is not None else ""
        segment = url_segment(url)
        # (browsers cut path parameters at the first or the last ";", or not at all)
        variants = [segment.split(";", 1)[0], segment.rsplit(";", 1)[0], segment]
        names = list(dict.fromkeys(name for name in variants if name))
    if content_type in SCRIPT_TYPES and not any("." in name for name in names):
        names.append("download.js")
    return names


def _names_a_file(names: list[str] | None) -> bool:
    """Whether an upload is stored as a file a desktop opens by its type: one of its
    names names a type (``run.hta``; not an API's address, ``/items/7``). Else an
    HTML body is a web page's data (a JSON message, an editor's fragment)."""
    return any(declared_name(name) for name in names or [])


def _is_attachment(message: Any, saved: list[str] | None) -> bool:
    """Whether the message is a file rather than a page: one with a file name, or
    one a browser saves (``saved``, from ``_saved_names``: a page served as
    ``application/octet-stream`` is saved, and opened later from disk with its
    scripts)."""
    disposition = (message.headers.get("Content-Disposition") or "").lower()
    return disposition.startswith("attachment") or "filename" in disposition or saved is not None


def _copy_spool(spool: Any, path: Path) -> None:
    import gevent

    with open(path, "wb") as f:
        for i, piece in enumerate(spool.chunks(COPY_SIZE)):
            f.write(piece)
            if i % 16 == 15:
                gevent.sleep(0)  # let other connections run during a large copy


def _profile_data(profile: Profile) -> dict[str, Any]:
    return profile.as_dict()


@gicap.hookimpl
def gicap_register_services(settings: Settings, host: PluginHost) -> list[Service]:
    return [
        CDRService("resp-cdr-service", "RESPMOD", settings, host),
        CDRService("req-cdr-service", "REQMOD", settings, host),
    ]
