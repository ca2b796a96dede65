"""SVG and HTML inputs found by a review with a browser as the reader: each delivered
file made Chromium fetch from outside (or run a script) when it was opened.

Most tests check the engine's output; those marked ``needs_chromium`` also open the
original and the delivered file in headless Chromium, served by a loopback server
that records every request: the original must call back (the browser really reads
the construct), the delivered file must not."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gicap_media import svg

from tests.loopback import Recorder, recording
from tests.plugins.test_media import _svg

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

HEAD = '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200">'
#: Where the files call back to; replaced by the loopback server's address.
CALLBACK = "http://callback.invalid/hit"


# --------------------------------------------------------------------------- browser


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with recording() as server:
        yield server


def _open(recorder: Recorder, tmp_path: Path, text: str, kind: str) -> list[str]:
    """The callbacks Chromium makes opening ``text`` (with CALLBACK in it), served as
    the proxy serves it, from a file on disk, and as an <img> of a page for SVG."""
    text = text.replace(CALLBACK, recorder.base + "/hit")
    mime = "image/svg+xml" if kind == "svg" else "text/html"
    recorder.files = {f"/doc.{kind}": (text.encode(), mime)}
    recorder.files["/page.html"] = (f'<img src="/doc.{kind}">'.encode(), "text/html")
    saved = tmp_path / f"opened.{kind}"
    saved.write_text(text, "utf-8")
    urls = [f"{recorder.base}/doc.{kind}", saved.as_uri()]
    if kind == "svg":
        urls.append(f"{recorder.base}/page.html")
    recorder.paths.clear()
    for url in urls:  # (one browser at a time)
        subprocess.run(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--virtual-time-budget=3000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
    return recorder.hits()


def _check_in_browser(recorder: Recorder, tmp_path: Path, original: str, kind: str) -> None:
    result, delivered = _svg(tmp_path, original)
    assert result.outcome == "rebuilt", result
    assert _open(recorder, tmp_path, original, kind), "the browser does not read the original"
    assert _open(recorder, tmp_path, delivered, kind) == []


# ------------------------------------------------------------ CSS substituted values

#: image-set() reads its strings as URLs: one brought by var() (a custom property,
#: here an inherited one), an @property's initial value or an @function's result was
#: never seen by the checks, which read the strings written inside the function.
SUBSTITUTED = {
    "inherited custom property": (
        f"<g style='--u:\"{CALLBACK}/a.png\"'>"
        "<rect width='100' height='100' style='background-image:image-set(var(--u) 1x)'/>"
        "<rect width='100' height='100' style='mask-image:image-set(var(--u) 1x)'/></g>"
    ),
    "custom property in <style>": (
        f"<style>svg{{--u:'{CALLBACK}/a.png'}} "
        "svg{background-image:-webkit-image-set(var(--u) 1x)}</style>"
    ),
    "@property initial value": (
        "<style>@property --p { syntax: '&lt;string&gt;'; inherits: true; "
        f"initial-value: '{CALLBACK}/a.png'; }} "
        "svg{background-image:image-set(var(--p) 1x)}</style>"
    ),
    "@function result": (
        f"<style>@function --f() {{ result: '{CALLBACK}/a.png'; }} "
        "svg{background-image:image-set(--f() 1x)}</style>"
    ),
}


@pytest.mark.parametrize("body", SUBSTITUTED.values(), ids=SUBSTITUTED.keys())
def test_a_value_substituted_into_image_set_is_an_external_reference(
    tmp_path: Path, body: str
) -> None:
    result, out = _svg(tmp_path, f"{HEAD}{body}</svg>")
    assert result.outcome == "rebuilt", result
    assert "image-set(" not in out
    assert any(a.switch == "foreign_objects" and a.action == "removed" for a in result.actions)
    result, out = _svg(tmp_path, f"{HEAD}{body}</svg>", foreign_objects="allow")
    assert "image-set(" in out  # (allowed: copied)
    result, _ = _svg(tmp_path, f"{HEAD}{body}</svg>", foreign_objects="disallow")
    assert result.outcome == "blocked", result


def test_a_substituted_value_without_quotes_is_not_left_to_the_fast_path(tmp_path: Path) -> None:
    # The use alone has no quote: a value the serialised fast path kept unread.
    body = "<rect width='9' height='9' style='background-image:image-set(var(--u) 1x)'/>"
    result, out = _svg(tmp_path, f"{HEAD}{body}</svg>")
    assert "image-set(" not in out, out
    policy = dict.fromkeys(svg.SWITCHES, "sanitise")
    assert svg._Rebuilder(policy)._fast(svg._parse(f"{HEAD}{body}</svg>".encode())) is None


@pytest.mark.parametrize(
    "css",
    [
        "fill: var(--colour, red)",  # no function taking URLs
        "background-image: image-set(url(#a) 1x); fill: xvar(--c)",  # another function
        "background-image: image-set(url(#a) 1x); --a--f: 1",  # a name, no function
    ],
)
def test_substitution_alone_is_no_external_reference(css: str) -> None:
    assert svg.css_findings(css) == []


def test_substitutions_are_read_in_linear_time() -> None:
    # (a run of dashes read again from each one took quadratic time)
    start = time.perf_counter()
    assert svg.css_findings("image-set(" + "-" * 200_000) == []
    assert len(svg.css_findings("image-set(" + "--a" * 100_000 + "(")) == 1
    assert time.perf_counter() - start < 5


@needs_chromium
@pytest.mark.parametrize("body", SUBSTITUTED.values(), ids=SUBSTITUTED.keys())
def test_browser_fetches_nothing_substituted_into_image_set(
    recorder: Recorder, tmp_path: Path, body: str
) -> None:
    _check_in_browser(recorder, tmp_path, f"{HEAD}{body}</svg>", "svg")


# ------------------------------------------------------------ HTML remote pictures


@needs_chromium
def test_browser_fetches_no_remote_picture_of_a_delivered_html_file(
    recorder: Recorder, tmp_path: Path
) -> None:
    """An <img> from another host is fetched as the file opens (a tracking pixel):
    ``html.external_images`` drops its address by default."""
    from gicap.cdr import job
    from gicap.cdr.policy import build_profile

    original = (
        "<!DOCTYPE html><html><body><p>Invoice</p>"
        f'<img src="{CALLBACK}/pixel.gif" width="1" height="1"><image src="{CALLBACK}/b">'
        "</body></html>"
    )
    source, dest = tmp_path / "invoice.html", tmp_path / "delivered.html"
    source.write_text(original)
    job.init_worker()
    answer = job.disarm_file(
        source, dest, build_profile("default", {}).as_dict(), "default", source.name, 10**8
    )
    assert answer["outcome"] == "rebuilt", answer
    assert _open(recorder, tmp_path, original, "html"), "the browser does not read the original"
    assert _open(recorder, tmp_path, dest.read_text(), "html") == []


# ------------------------------------------------------ links inside foreign content


def test_links_of_allowed_foreign_content_follow_the_hyperlinks_switch(tmp_path: Path) -> None:
    """With foreign content allowed, a MathML href (Firefox follows it when clicked) and
    an XHTML form's action were kept whatever the hyperlinks switch said."""
    body = (
        '<foreignObject width="100" height="100">'
        '<div xmlns="http://www.w3.org/1999/xhtml"><form action="https://a.example/f">'
        '<button formaction="https://b.example/g">go</button></form>'
        '<math xmlns="http://www.w3.org/1998/Math/MathML"><mi href="https://c.example/m">x</mi>'
        "</math></div></foreignObject>"
    )
    result, out = _svg(tmp_path, f"{HEAD}{body}</svg>", foreign_objects="allow")
    assert result.outcome == "rebuilt"
    assert "example" not in out and "<mi" in out and "<form" in out
    result, out = _svg(tmp_path, f"{HEAD}{body}</svg>", foreign_objects="allow", hyperlinks="allow")
    assert all(host in out for host in ("a.example", "b.example", "c.example")), out
