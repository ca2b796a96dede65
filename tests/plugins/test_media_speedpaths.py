"""SVG engine: the allowlist applied where the parsed tree stands (unprefixed SVG root)
and by copy (other roots) give the same document; what the shortcuts skip (attribute
values without "(", ":" or "\\", entity scan without a DOCTYPE) cannot change it.

Outputs are read back with the standard library's parser, independent of lxml."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gicap.cdr.types import DisarmResult
from tests.plugins.test_media import _disarm as disarm_file

SVG = "http://www.w3.org/2000/svg"
XLINK = "http://www.w3.org/1999/xlink"
HEAD = f'<svg xmlns="{SVG}" xmlns:xlink="{XLINK}" xmlns:i="urn:editor" width="10"'

MIXED = f"""{HEAD} onload="x()" i:version="1">a<?pi data?>b<rect width="1" i:label="l"/>c<unknown>u<rect/></unknown>d<script>s()</script>e<i:meta>m</i:meta>f<g fill="url(#p)" stroke="url(java&#9;script:x())" style="fill: \\75rl(x)" transform="translate(1,2)" xml:space="preserve"><text x="1">t<a href="https://example.com/">l<tspan>q</tspan></a>u</text><a xlink:href=" javascript:y()" onclick="z()"><circle r="2"/></a></g><use xlink:href="https://evil.example/s.svg#i"/><use href="#p" xlink:title="t" xlink:show="new"/><set attributeName="onclick" to="x"/><path d="M0,0 L1,1 Z" bogus="1"/>g</svg>"""  # noqa: E501


def _disarm(tmp_path: Path, data: bytes, **switches: str) -> tuple[DisarmResult, bytes]:
    """The engine through its hook (``test_media._disarm``); the rebuilt bytes, if any."""
    result, dest = disarm_file(tmp_path, data, "svg", switches)
    return result, dest.read_bytes() if result.outcome == "rebuilt" else b""


def _shape(el: ET.Element) -> tuple[object, ...]:
    """Tag (local name), attributes, text and tail, recursively."""
    return (
        el.tag.rsplit("}", 1)[-1],
        sorted((k.replace(f"{{{XLINK}}}", "xlink:"), v) for k, v in el.attrib.items()),
        el.text or "",
        el.tail or "",
        [_shape(c) for c in el],
    )


def test_in_place_allowlist(tmp_path: Path) -> None:
    result, out = _disarm(tmp_path, MIXED.encode())
    assert result.outcome == "rebuilt"
    root = ET.fromstring(out)
    assert root.tag == f"{{{SVG}}}svg"
    # Text around removed nodes (PI, unknown element, script, editor element) stays,
    # in order; the unknown element's content goes with it.
    assert root.text == "ab"
    children = list(root)
    assert [c.tag.rsplit("}", 1)[-1] for c in children] == ["rect", "g", "use", "use", "path"]
    assert [c.tail or "" for c in children] == ["cdef", "", "", "", "g"]
    assert children[0].attrib == {"width": "1"}
    group = children[1]
    # fill="url(#p)" is internal; the script URL and the escaped url() are removed.
    assert group.attrib == {
        "fill": "url(#p)",
        "transform": "translate(1,2)",
        "{http://www.w3.org/XML/1998/namespace}space": "preserve",
    }
    text, unlinked = list(group)
    # Links go (hyperlinks=sanitise): <a> becomes <tspan> in text, <g> elsewhere.
    assert _shape(text) == (
        "text",
        [("x", "1")],
        "t",
        "",
        [("tspan", [], "l", "u", [("tspan", [], "q", "", [])])],
    )  # noqa: E501
    assert _shape(unlinked) == ("g", [], "", "", [("circle", [("r", "2")], "", "", [])])
    assert children[2].attrib == {}  # external reference removed
    assert children[3].attrib == {"href": "#p", f"{{{XLINK}}}title": "t"}
    assert children[4].attrib == {"d": "M0,0 L1,1 Z"}
    assert b"urn:editor" not in out  # the unused editor namespace is not declared
    assert b"javascript" not in out.lower() and b"onclick" not in out and b"onload" not in out
    # Reported as before.
    removed = {a.switch: a.detail for a in result.actions}
    assert "event handler attribute" in removed["scripts"]
    assert "script URL in href" in removed["scripts"]
    assert "<set> changing onclick" in removed["scripts"]


@pytest.mark.parametrize(
    "rewrite",
    [
        # a prefixed SVG root and a root without namespace take the copying path
        lambda t: (
            t.replace(f'xmlns="{SVG}"', f'xmlns:svg="{SVG}"')
            .replace("<svg ", "<svg:svg ")
            .replace("</svg>", "</svg:svg>")
            .replace("<rect", "<svg:rect")
            .replace("<g ", "<svg:g ")
            .replace("</g>", "</svg:g>")
            .replace("<text", "<svg:text")
            .replace("</text>", "</svg:text>")
            .replace("<a ", "<svg:a ")
            .replace("</a>", "</svg:a>")
            .replace("<tspan", "<svg:tspan")
            .replace("</tspan>", "</svg:tspan>")
            .replace("<circle", "<svg:circle")
            .replace("<use", "<svg:use")
            .replace("<set", "<svg:set")
            .replace("<path", "<svg:path")
            .replace("<script>", "<svg:script>")
            .replace("</script>", "</svg:script>")
        ),
        lambda t: t.replace(f' xmlns="{SVG}"', ""),
    ],
    ids=["prefixed", "no-namespace"],
)
def test_copy_path_gives_the_same_document(tmp_path: Path, rewrite: object) -> None:
    _, expected = _disarm(tmp_path, MIXED.encode())
    result, out = _disarm(tmp_path, rewrite(MIXED).encode())  # type: ignore[operator]
    assert result.outcome == "rebuilt"
    assert _shape(ET.fromstring(out)) == _shape(ET.fromstring(expected))


def test_plain_values_are_kept_and_allow_keeps_everything(tmp_path: Path) -> None:
    drawing = f'<svg xmlns="{SVG}"><path d="M0,0 L5,5" stroke-width="2"/><rect x="1"/></svg>'
    result, out = _disarm(tmp_path, drawing.encode())
    assert result.outcome == "rebuilt" and not result.actions
    assert _shape(ET.fromstring(out)) == _shape(ET.fromstring(drawing))
    result, out = _disarm(tmp_path, MIXED.encode(), scripts="allow", hyperlinks="allow")
    root = ET.fromstring(out)
    assert root.get("onload") == "x()"
    assert [a.get(f"{{{XLINK}}}href") for a in root.iter(f"{{{SVG}}}a")] == [
        None,
        " javascript:y()",
    ]  # noqa: E501
    assert root.find(f".//{{{SVG}}}a").get("href") == "https://example.com/"  # type: ignore[union-attr]


def test_kept_stylesheet_instruction_precedes_the_root(tmp_path: Path) -> None:
    data = f'<?xml-stylesheet type="text/css" href="a.css"?>{HEAD}><rect/></svg>'.encode()
    result, out = _disarm(tmp_path, data, foreign_objects="allow")
    assert result.outcome == "rebuilt"
    assert out.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<?xml-stylesheet ")
    ET.fromstring(out)
    result, out = _disarm(tmp_path, data)
    assert b"xml-stylesheet" not in out


@pytest.mark.parametrize(
    "data",
    [
        f'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "svg11.dtd"><svg xmlns="{SVG}">&x;</svg>',
        f'<svg xmlns="{SVG}"><text>&x;</text></svg>',
        f'<svg xmlns="{SVG}" width="&x;"/>',
    ],
    ids=["external-dtd", "no-dtd-text", "no-dtd-attribute"],
)
def test_entity_references_never_reach_the_output(tmp_path: Path, data: str) -> None:
    result, out = _disarm(tmp_path, data.encode())
    assert result.outcome == "unprocessable" and not out
