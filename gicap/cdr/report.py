"""What happened to one file, and the block page a user sees instead of it."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, BinaryIO

#: Final outcomes of a transaction.
REBUILT, UNMODIFIED, BLOCKED, RELAYED = "rebuilt", "unmodified", "blocked", "relayed"


@dataclass
class FileReport:
    file_id: str
    outcome: str  # rebuilt | unmodified | blocked | relayed
    reason: str = ""
    #: What the engine (or the pipeline) said: rebuilt, unmodified, blocked,
    #: unprocessable, encrypted, unsupported, oversize, timeout, crashed, ...
    engine_outcome: str = ""
    file_type: str = ""
    output_type: str = ""
    actions: list[dict[str, str]] = field(default_factory=list)
    name: str = ""  # file name or URL, for the report page
    profile: str = "default"
    size_in: int = 0
    size_out: int = 0
    #: The rebuilt file, open for reading (already unlinked from the spool directory).
    body: BinaryIO | None = None
    #: Set when the rebuild changed the type (a .docm delivered as .docx).
    content_type: str = ""
    #: Sent with ``X-Content-Type-Options: nosniff`` (its Content-Type was corrected).
    nosniff: bool = False
    #: A request header the answer varies by (``Vary``): what fetched it, for a page's
    #: subresource a navigation would have saved (see gicap.services.cdr).
    vary: str = ""
    #: ``body`` is the original as it came (encoded too), sent again only to add
    #: ``vary``: the original's headers stay (its validators, its Content-Encoding).
    echo: bool = False
    old_extension: str = ""
    new_extension: str = ""
    file_id_header: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "outcome": self.outcome,
            "reason": self.reason,
            "engine_outcome": self.engine_outcome,
            "file_type": self.file_type,
            "output_type": self.output_type,
            "actions": self.actions,
            "name": self.name,
            "profile": self.profile,
            "size_in": self.size_in,
            "size_out": self.size_out,
        }


def block_page(report: FileReport) -> bytes:
    """An HTML page naming what was blocked, why, and the file id (no original bytes)."""
    esc = html.escape
    rows = "".join(
        f"<li>{esc(a.get('switch', ''))}: {esc(a.get('action', ''))}"
        f"{' — ' + esc(a['detail']) if a.get('detail') else ''}</li>"
        for a in report.actions
    )
    actions = f"<p>Content found:</p><ul>{rows}</ul>" if rows else ""
    page = f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>File blocked</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:3em auto;color:#222}}
code{{background:#eee;padding:0 .3em}}</style></head>
<body>
<h1>This file was blocked</h1>
<p>The file <code>{esc(report.name or "(unnamed)")}</code> was not delivered because
the content-management policy does not allow it.</p>
<p><strong>Reason:</strong> {esc(report.reason or "policy")}</p>
{actions}
<p>Detected type: <code>{esc(report.file_type or "unknown")}</code>;
policy profile: <code>{esc(report.profile)}</code>.</p>
<p>File id: <code>{esc(report.file_id)}</code> — quote it to your administrator.</p>
</body>
</html>
"""
    return page.encode("utf-8")
