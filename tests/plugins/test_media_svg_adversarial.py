"""SVG inputs found by an adversarial review of the engine: each is handled the same
way by the fast path and the walk, and as a user of the engine expects."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.plugins.test_media import _svg, _svg_tree

SVG = "http://www.w3.org/2000/svg"
XLINK = "http://www.w3.org/1999/xlink"
#: an invalid xml:space value: libxml2 warns after the error before it
WARNING = '<g xml:space="x"/>'


@pytest.mark.parametrize(
    "body",
    [
        '<rect xlink:onclick="alert(1)"/>',
        '<clipPath xlink:show="new"/>',
        '<a xlink:href="https://example.com/">x</a><use href="#a"/>',
    ],
)
def test_undeclared_prefix_is_refused_even_when_a_warning_follows(
    tmp_path: Path, body: str
) -> None:
    # lxml raised only when libxml2's last message was an error: the warning after the
    # undeclared prefix let the document through, attributes named "xlink:..." with it
    result, _ = _svg(tmp_path, f'<svg xmlns="{SVG}">{body}{WARNING}</svg>', hyperlinks="sanitise")
    assert result.outcome == "unprocessable"
    assert "not defined" in result.reason


def test_value_ending_like_an_event_attribute_is_not_one(tmp_path: Path) -> None:
    text = f'<svg xmlns="{SVG}"><rect class="a onx=" width="1"/></svg>'
    result, out = _svg(tmp_path, text, scripts="disallow")
    assert result.outcome == "rebuilt", result  # not blocked: nothing to disallow
    assert not [a for a in result.actions if a.switch == "scripts"]
    rect = _svg_tree(out).find(f"{{{SVG}}}rect")
    assert rect is not None and rect.get("class") == "a onx="


def test_event_attribute_whose_value_starts_with_a_space(tmp_path: Path) -> None:
    text = f'<svg xmlns="{SVG}"><rect onclick=" alert(1)" width="1"/></svg>'
    result, out = _svg(tmp_path, text, scripts="sanitise")
    assert result.outcome == "rebuilt"
    rect = _svg_tree(out).find(f"{{{SVG}}}rect")
    assert rect is not None and dict(rect.attrib) == {"width": "1"}


def test_doctype_strings_in_a_comment_take_linear_time(tmp_path: Path) -> None:
    # every "<!DOCTYPE a" in the comment used to start a scan of the rest of the text
    comment = "<!--" + "<!DOCTYPE a " * 40_000 + "-->"
    text = f'<!DOCTYPE svg>{comment}<svg xmlns="{SVG}"><rect width="1"/></svg>'
    start = time.perf_counter()
    result, _ = _svg(tmp_path, text)
    assert time.perf_counter() - start < 5  # was minutes
    assert result.outcome in ("unmodified", "rebuilt")


@pytest.mark.parametrize(
    "prolog",
    [
        "",
        "<?xml version='1.0'?>\n<!-- a comment -->\n<?pi data?>\n",
        "<!-- <!DOCTYPE x> -->",
    ],
)
def test_internal_subset_after_a_prolog_is_refused(tmp_path: Path, prolog: str) -> None:
    text = f'{prolog}<!DOCTYPE svg [<!ATTLIST svg onload CDATA "alert(1)">]><svg xmlns="{SVG}"/>'
    result, _ = _svg(tmp_path, text)
    assert result.outcome == "unprocessable"
    assert "internal subset" in result.reason


def test_doctype_without_internal_subset_is_accepted(tmp_path: Path) -> None:
    text = (
        '<!-- <!DOCTYPE x [ -->\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
        '"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">'
        f'<svg xmlns="{SVG}"><rect width="1"/></svg>'
    )
    result, out = _svg(tmp_path, text)
    assert result.outcome in ("unmodified", "rebuilt"), result
    assert "DOCTYPE" not in out


@pytest.mark.parametrize("name", ["onx", "data-x", "fill"])
def test_element_with_many_attributes_takes_linear_time(tmp_path: Path, name: str) -> None:
    # lxml's values() looks each value up by name: 100,000 attributes took ~25 s
    attributes = " ".join(f'{name}{i}="a"' for i in range(100_000))
    text = f'<svg xmlns="{SVG}"><g {attributes}/><foreignObject/></svg>'
    start = time.perf_counter()
    result, out = _svg(tmp_path, text)
    assert time.perf_counter() - start < 10
    assert result.outcome == "rebuilt"
    g = _svg_tree(out).find(f"{{{SVG}}}g")
    assert g is not None and not g.attrib  # none of these names is allowlisted


def test_attribute_values_read_through_xpath_are_lxmls() -> None:
    from gicap_media.svg import _values
    from lxml import etree

    attributes = " ".join(f'a{i}="v{i}"' for i in range(200))
    el = etree.fromstring(
        f'<g xmlns="{SVG}" xmlns:xlink="{XLINK}" {attributes} xlink:href="#x" '
        'xml:space="preserve" b="&lt;&amp;&#10;"/>'.encode()
    )
    assert _values(el) == el.values()
    assert _values(el, el.keys()) == el.values()


@pytest.mark.parametrize(
    "css",
    [
        # a newline ends a CSS string: the url( after it is live (read as one string
        # up to the next quote, it was taken for the fragment it started with)
        'a{fill:url("#a\n)}t{cursor:url(http://evil.example/c.png),auto}c{content:"x"}',
        # a no-break space is no CSS white space: url(\u00a0"... is an unquoted URL
        'a{fill:url(\u00a0"#a)}t{cursor:url(http://evil.example/c.png),auto}c{content:"x"}',
    ],
    ids=["newline-in-string", "nbsp-after-url"],
)
def test_a_url_behind_a_string_css_ends_is_read(tmp_path: Path, css: str) -> None:
    text = f'<svg xmlns="{SVG}"><style>{css}</style><text>hi</text></svg>'
    result, out = _svg(tmp_path, text)
    assert result.outcome == "rebuilt" and "evil.example" not in out, out
    assert any(a.switch == "foreign_objects" for a in result.actions)


@pytest.mark.parametrize("prefix", ["&#127;", "&#160;"])
def test_a_fragment_behind_a_character_the_url_standard_keeps_is_a_fetch(
    tmp_path: Path, prefix: str
) -> None:
    """A DEL or a no-break space before "#" makes a relative URL (./%7F#x): a fetch
    from the server, not a reference within the document."""
    text = (
        f'<svg xmlns="{SVG}"><use href="{prefix}#x"/><image href="{prefix}#z"/>'
        f'<rect id="x" fill="url(&quot;{prefix}#y&quot;)"/></svg>'
    )
    result, out = _svg(tmp_path, text)
    assert result.outcome == "rebuilt"
    assert "#x" not in out and "#z" not in out and "#y" not in out, out


def test_a_script_url_in_a_list_of_values_goes_on_any_element(tmp_path: Path) -> None:
    text = f'<svg xmlns="{SVG}"><rect values="1;javascript:alert(1)" width="1"/></svg>'
    result, out = _svg(tmp_path, text)
    assert result.outcome == "rebuilt" and "javascript" not in out, out
    assert any(a.switch == "scripts" for a in result.actions)


def test_many_attribute_names_to_strip_go_to_the_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lxml's strip_attributes compares every attribute with every name it is given:
    130,000 distinct names took 5 s. It is never given more than a few."""
    from gicap_media import svg
    from lxml import etree

    given: list[int] = []
    real = etree.strip_attributes

    def counted(tree: object, *names: str) -> None:
        given.append(len(names))
        real(tree, *names)

    monkeypatch.setattr(svg.etree, "strip_attributes", counted)
    body = "".join(f'<g a{i}="" on{i}="x"/>' for i in range(2_000))
    result, out = _svg(tmp_path, f'<svg xmlns="{SVG}">{body}<rect width="1"/></svg>')
    assert result.outcome == "rebuilt" and "a1999" not in out and "on1999" not in out
    assert all(n <= svg._MAX_STRIPPED_NAMES for n in given), given
