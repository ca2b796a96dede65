"""SVG engine: the two ways the allowlist is applied agree, and what each policy
switch removes is gone, on crafted edge cases under all 27 policy combinations.

An unprefixed SVG root is allowlisted where the parsed tree stands; any other root is
rebuilt by copy. Both are run here on the same documents and must give the same tree
and the same findings. Outputs are read back with the standard library's parser,
independent of lxml; the safety checks look at the output with their own rules.
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from gicap_media import svg
from lxml import etree

from gicap.cdr.types import DisarmResult
from tests.plugins.test_media import _disarm as disarm_file

SVG = "http://www.w3.org/2000/svg"
XLINK = "http://www.w3.org/1999/xlink"
XHTML = "http://www.w3.org/1999/xhtml"
MATHML = "http://www.w3.org/1998/Math/MathML"
HEAD = f'<svg xmlns="{SVG}" xmlns:xlink="{XLINK}"'
SWITCHES = ("scripts", "foreign_objects", "hyperlinks")
POLICIES = [
    dict(zip(SWITCHES, combo, strict=True))
    for combo in itertools.product(("allow", "sanitise", "disallow"), repeat=3)
]

CASES = {
    "internal-subset": f'<!DOCTYPE svg [<!ENTITY a "x">]>{HEAD}><text>&a;</text></svg>',
    "public-doctype": (
        '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN"'
        ' "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">'
        f"{HEAD}><text>&amp;&lt;</text></svg>"
    ),
    "prefixed-root": (
        f'<s:svg xmlns:s="{SVG}" xmlns:x="{XLINK}"><s:a x:href="https://e/">t</s:a>'
        '<s:rect x:href="#a" s:fill="red" fill="url(#g)"/></s:svg>'
    ),
    "no-namespace-root": (
        '<svg><rect fill="url(http://e/x)"/><a href="javascript:alert(1)">x</a>'
        f'<foreignObject><div xmlns="{XHTML}" onclick="x">h<iframe src="//e"/></div>'
        "</foreignObject><script>1</script></svg>"
    ),
    "references": (
        f'{HEAD}><use xlink:href="https://e/s.svg#i"/><use href="#i"/>'
        '<use xlink:href="data:image/svg+xml;base64,AAAA"/>'
        '<image href="data:image/svg+xml,&lt;svg/&gt;"/><image xlink:href="data:text/html,x"/>'
        '<image href="data:image/png;base64,AA"/><feImage href="https://e/x.png"/>'
        '<linearGradient href="https://e/g.svg#g"/><pattern xlink:href="#p"/>'
        '<textPath xlink:href="https://e/#p">t</textPath></svg>'
    ),
    "script-urls": (
        f'{HEAD}><a xlink:href="java&#9;script:alert(1)"><text>t</text></a>'
        '<a href=" java&#10;script:x">u</a><a href="JaVaScRiPt:x">v</a>'
        '<a href="vbscript:x">w</a><a>no href</a><a href="#frag">f</a>'
        '<a xlink:href="https://e" href="#y">b</a></svg>'
    ),
    "css": (
        f'{HEAD}><rect style="fill:url(http://e/a)"/><rect style="width:expression(alert(1))"/>'
        '<rect style="background:u\\72l(http://e)"/><rect style="behavior: url(x.htc)"/>'
        '<rect style="-moz-binding:url(x)"/><rect style="fill:red"/>'
        '<rect style="@import \'x\'"/><rect style="fill:/*c*/url(#g)"/>'
        '<rect fill="\\75rl(x)"/><rect fill="javascript:x"/>'
        '<rect stroke="url(\'data:text/html,x\')"/><rect fill="url(data:image/png;base64,A)"/>'
        '<rect fill="url( &quot;javascript:x&quot; )"/>'
        '<rect style="fill:image(&quot;http://e&quot;)"/><rect fill="rgb(1,2,3)"/>'
        '<rect class="a:b" width="\\1"/><path d="M0 0"/></svg>'
    ),
    "links-in-text": (
        f'{HEAD}><text x="1">a<a href="https://e/">b<tspan>c</tspan></a>d'
        '<a xlink:href="#x">e</a></text><text><textPath href="#p"><a href="https://e">z</a>'
        '</textPath></text><a href="https://e/"><a href="#x"><text>t</text></a></a></svg>'
    ),
    "nested-svg": (
        f'{HEAD}><svg x="1"><svg><rect onclick="x"/><script>y</script></svg></svg>'
        '<g><svg xmlns:q="urn:q" q:a="1"><q:e/></svg></g></svg>'
    ),
    "animations": (
        f'{HEAD}><set attributeName="href" to="javascript:x"/>'
        '<animate attributeName="xlink:href" values="javascript:x"/>'
        '<animate attributeName=" ONclick " to="x"/><animate attributeName="fill" to="red"/>'
        '<animateTransform attributeName="transform" type="rotate" from="0" to="1"/></svg>'
    ),
    "foreign-object": (
        f'{HEAD}><foreignObject width="10"><html xmlns="{XHTML}"><body onload="x()">'
        '<p style="color:red" srcdoc="x"><a href="https://e/">l</a>'
        '<img src="javascript:x" srcset="a.png 1x, javascript:y 2x"/><embed src="x"/>'
        '<object data="y"/><style>p{background:url(http://e)}</style>'
        f'<math xmlns="{MATHML}"><mi>x</mi></math></p><area href="https://e"/></body></html>'
        f'</foreignObject><p xmlns="{XHTML}">outside</p></svg>'
    ),
    "cdata": (
        f"{HEAD}><style><![CDATA[rect{{fill:red}} @import url(x.css);]]></style>"
        '<style type="text/css"><![CDATA[ .a { fill: blue } ]]></style>'
        "<script><![CDATA[ if (a < b) alert(1) ]]></script><style>a{b:url(#x)}</style></svg>"
    ),
    "stylesheet-instructions": (
        '<?xml-stylesheet type="text/xsl" href="x.xsl"?>'
        '<?xml-stylesheet type="text/css" href="x.css"?><?other x?>'
        f'{HEAD}><?xml-stylesheet href="inner.css"?><rect/></svg>'
    ),
    "xml-and-xlink-attributes": (
        f'{HEAD} xml:base="http://e/" xml:space="preserve" xml:lang="en">'
        '<rect xml:base="http://e/" xml:space="default" xlink:title="t" xlink:show="new"/>'
        '<a xlink:title="t" xlink:show="new" xlink:role="r" target="_blank" href="https://e"/>'
        "</svg>"
    ),
    "editor-namespaces": (
        f'{HEAD} xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape">'
        '<g inkscape:label="L"><rect inkscape:x="1" x="1"/></g><metadata>'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></metadata></svg>'
    ),
    "namespace-declarations": (
        f'<svg xmlns="{SVG}" xmlns:svg="{SVG}"><svg:rect/><svg:a href="https://e">x</svg:a>'
        f'<rect xmlns="urn:other"/><g xmlns=""><rect/></g><x:rect xmlns:x="{SVG}" x:width="1"/>'
        "</svg>"
    ),
    "script-elements": (
        f"{HEAD}><handler>x</handler><listener/><SCRIPT>y</SCRIPT>"
        '<g onLoad="x" ONCLICK="y" aria-label="l" data-x="1" tabindex="1"/></svg>'
    ),
    "text-around-removed-nodes": (
        f"{HEAD}>a<!--c-->b<?pi?>c<rect/>d<unknown>e</unknown>f<script>g</script>h</svg>"
    ),
    "deep": f"{HEAD}>{'<g>' * 254}<rect/>{'</g>' * 254}</svg>",
    "drawing": HEAD
    + ' onload="alert(1)"><script>alert(2)</script>'
    + "".join(
        f'<rect x="{n}" fill="url(#g)"/><circle r="5" style="fill:#{n:03x}"/>'
        f'<path d="M{n},1 z"/><a xlink:href="https://e/{n}"><text onclick="go()">{n}</text></a>'
        for n in range(50)
    )
    + "</svg>",
}


def _disarm(tmp_path: Path, data: bytes, policy: dict[str, str]) -> tuple[DisarmResult, bytes]:
    """The engine through its hook (``test_media._disarm``); the rebuilt bytes, if any."""
    result, dest = disarm_file(tmp_path, data, "svg", policy)
    return result, dest.read_bytes() if result.outcome == "rebuilt" else b""


def _shape(el: ET.Element) -> tuple[object, ...]:
    """Tag, attributes, text and tail, recursively."""
    return (
        el.tag,
        sorted(el.attrib.items()),
        el.text or "",
        el.tail or "",
        [_shape(c) for c in el],
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_in_place_and_copy_agree(name: str) -> None:
    data = CASES[name].encode()
    try:
        root = svg._parse(data)
    except (svg.Refused, etree.XMLSyntaxError):
        return  # refused before either path runs
    if root.tag != f"{{{SVG}}}svg" or root.prefix is not None:
        return  # only the copy path applies
    for policy in POLICIES:
        in_place = svg._Rebuilder(dict(policy))
        out = in_place.rebuild(svg._parse(data))
        by_copy = svg._Rebuilder(dict(policy))
        by_copy._stylesheets(root)
        copied = etree.tostring(by_copy._copy(svg._parse(data)))
        assert _shape(ET.fromstring(out)) == _shape(ET.fromstring(copied)), policy
        assert in_place.found == by_copy.found, policy


_SCRIPT_URL = re.compile(r"^(?:javascript|vbscript|livescript|mocha):")


def _script_url(value: str) -> bool:
    return bool(_SCRIPT_URL.match(re.sub(r"[\x00-\x20\x7f]+", "", value).lower()))


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_switch_is_honoured(tmp_path: Path, name: str) -> None:
    for policy in POLICIES:
        result, out = _disarm(tmp_path, CASES[name].encode(), policy)
        assert result.outcome in ("rebuilt", "blocked", "unprocessable"), policy
        if result.outcome == "blocked":
            blocked = {a.switch for a in result.actions}
            assert blocked and all(policy[s] == "disallow" for s in blocked), policy
            continue
        if result.outcome != "rebuilt":
            continue
        # What a switch blocks is never in a rebuilt file.
        for action in result.actions:
            assert policy[action.switch] != "disallow", policy
        root = ET.fromstring(out)
        elements = list(root.iter())
        if policy["scripts"] != "allow":
            for el in elements:
                local = el.tag.rsplit("}", 1)[-1]
                assert local.lower() not in ("script", "handler", "listener"), policy
                for attr, value in el.attrib.items():
                    assert not attr.rsplit("}", 1)[-1].lower().startswith("on"), policy
                    assert not _script_url(value), (policy, attr, value)
                    assert "expression(" not in value.replace(" ", "").lower(), policy
        if policy["foreign_objects"] != "allow":
            for el in elements:
                assert not el.tag.startswith((f"{{{XHTML}}}", f"{{{MATHML}}}")), policy
                assert el.tag != f"{{{SVG}}}foreignObject", policy
                if el.tag == f"{{{SVG}}}a":
                    continue  # (a link: the hyperlinks switch)
                for attr, value in el.attrib.items():
                    if attr in ("href", f"{{{XLINK}}}href") and not _script_url(value):
                        assert value.strip().startswith(("#", "data:")), (policy, value)
        if policy["hyperlinks"] != "allow":
            for el in elements:
                if el.tag == f"{{{SVG}}}a":
                    assert "href" not in el.attrib and f"{{{XLINK}}}href" not in el.attrib
