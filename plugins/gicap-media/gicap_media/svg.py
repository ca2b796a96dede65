"""SVG: an allowlist rebuild with lxml.

The file is parsed with a hardened parser (no DTD loading, no entity expansion, no
network, libxml2's size limits) and every node of the parsed tree is visited: only
allowlisted SVG elements and attributes stay, so an element or attribute this module
does not know about is never in the output: comments, processing instructions,
DOCTYPEs, editor namespaces (Inkscape, Sodipodi, RDF metadata), ``xml:base``, unknown
attributes. Allowlisted SVG elements with allowlisted attributes are kept where
they were parsed (everything else in them removed); an element needing a decision
of its own (scripts, styles, animations, foreign content) is rebuilt as a new copy.

Policy switches (family ``svg``):

* ``scripts``: ``<script>`` (any namespace), SVG Tiny ``handler``/``listener``, every
  ``on*`` event attribute, ``javascript:``/``vbscript:``/markup ``data:`` URLs
  anywhere (href, xlink:href, ``url()`` in attributes and CSS), ``<style>`` and
  ``style`` attributes with ``@import``, CSS ``expression()``/``behavior``/
  ``-moz-binding``, animations (``set``, ``animate``...) that target ``href`` or an
  ``on*`` attribute, ``xml-stylesheet`` processing instructions pointing at XSLT.
  Inside an allowed ``foreignObject``, also ``iframe``/``frame``/``object``/``embed``/
  ``applet``/``base``/``meta``/``link`` elements and ``srcdoc`` attributes.
* ``foreign_objects``: ``<foreignObject>`` and any XHTML/MathML element, plus
  **external references**: ``use``/``image``/``feImage``/gradient/pattern/``textPath``
  hrefs and CSS ``url()`` values that point outside the document (absolute or
  relative URLs; ``#fragment`` and raster ``data:image/...`` URLs are internal),
  and CSS ``xml-stylesheet`` processing instructions.
* ``hyperlinks``: the ``href`` of ``<a>`` elements; when removed the ``<a>`` becomes a
  ``<g>`` (a ``<tspan>`` inside text) so its children and styling stay.

``allow`` copies the thing, ``sanitise`` leaves it out of the new document,
``disallow`` blocks the file when it is present. The result is UTF-8 XML.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from lxml import etree

from gicap.cdr.patterns import SCRIPT_SCHEMES
from gicap.cdr.patterns import trie as _trie
from gicap.cdr.policy import SWITCHES as POLICY_SWITCHES
from gicap.cdr.types import Action, DisarmRequest, DisarmResult

SWITCHES = POLICY_SWITCHES["svg"]

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
XHTML_NS = "http://www.w3.org/1999/xhtml"
MATHML_NS = "http://www.w3.org/1998/Math/MathML"
XML_NS = "http://www.w3.org/XML/1998/namespace"
FOREIGN_NAMESPACES = (XHTML_NS, MATHML_NS)

#: Refuse documents with more elements than this (libxml2 already limits depth and
#: text size when huge_tree is off).
MAX_ELEMENTS = 500_000
MAX_DEPTH = 256

#: SVG elements copied (when their switch allows them, for a, foreignObject).
SVG_ELEMENTS = frozenset(
    """
    svg g defs desc title symbol use switch image path rect circle ellipse line polyline
    polygon text tspan textPath marker pattern clipPath mask linearGradient
    radialGradient stop filter style view a foreignObject animate animateMotion
    animateTransform animateColor set mpath feBlend feColorMatrix feComponentTransfer
    feComposite feConvolveMatrix feDiffuseLighting feDisplacementMap feDistantLight
    feDropShadow feFlood feFuncA feFuncB feFuncG feFuncR feGaussianBlur feImage feMerge
    feMergeNode feMorphology feOffset fePointLight feSpecularLighting feSpotLight feTile
    feTurbulence
    """.split()
)
ANIMATIONS = frozenset({"animate", "animateMotion", "animateTransform", "animateColor", "set"})
TEXT_CONTAINERS = frozenset({"text", "tspan", "textPath"})
SCRIPT_ELEMENTS = frozenset({"script", "handler", "listener"})
#: Elements inside (allowed) foreign content that load or run active content.
FOREIGN_ACTIVE = frozenset(
    {
        "iframe",
        "frame",
        "frameset",
        "object",
        "embed",
        "applet",
        "base",
        "meta",
        "link",
        "portal",
        "noscript",
    }  # fmt: skip
)

#: Attributes (no namespace) copied on SVG elements.
SVG_ATTRIBUTES = frozenset(
    """
    id class style lang tabindex role focusable
    x y x1 y1 x2 y2 cx cy r rx ry fx fy fr width height d points pathLength transform
    viewBox preserveAspectRatio version baseProfile zoomAndPan dx dy rotate textLength
    lengthAdjust startOffset method spacing side path
    alignment-baseline baseline-shift clip clip-path clip-rule color color-interpolation
    color-interpolation-filters color-profile color-rendering cursor direction display
    dominant-baseline enable-background fill fill-opacity fill-rule filter flood-color
    flood-opacity font font-family font-size font-size-adjust font-stretch font-style
    font-variant font-weight glyph-orientation-horizontal glyph-orientation-vertical
    image-rendering kerning letter-spacing lighting-color marker marker-start marker-mid
    marker-end mask opacity overflow paint-order pointer-events shape-rendering
    stop-color stop-opacity stroke stroke-dasharray stroke-dashoffset stroke-linecap
    stroke-linejoin stroke-miterlimit stroke-opacity stroke-width text-anchor
    text-decoration text-rendering transform-origin transform-box unicode-bidi
    vector-effect visibility word-spacing writing-mode mix-blend-mode isolation mask-type
    gradientUnits gradientTransform spreadMethod offset patternUnits patternContentUnits
    patternTransform clipPathUnits maskUnits maskContentUnits markerUnits markerWidth
    markerHeight refX refY orient viewTarget
    filterUnits primitiveUnits in in2 result stdDeviation edgeMode mode operator k1 k2 k3
    k4 type values tableValues slope intercept amplitude exponent order kernelMatrix
    divisor bias targetX targetY kernelUnitLength preserveAlpha surfaceScale
    specularConstant specularExponent diffuseConstant azimuth elevation pointsAtX
    pointsAtY pointsAtZ limitingConeAngle scale xChannelSelector yChannelSelector
    baseFrequency numOctaves seed stitchTiles radius filterRes
    attributeName attributeType begin dur end min max restart repeatCount repeatDur
    calcMode keyTimes keySplines from to by additive accumulate keyPoints origin
    requiredFeatures requiredExtensions systemLanguage externalResourcesRequired media
    """.split()
)
#: Extra attributes of a kept <a> (its link).
LINK_ATTRIBUTES = frozenset({"target", "rel", "hreflang", "type", "referrerpolicy"})
XLINK_ATTRIBUTES = frozenset({"title", "type", "role", "arcrole", "show", "actuate"})
#: Attributes holding URLs on foreign (XHTML) elements.
FOREIGN_URL_ATTRIBUTES = frozenset(
    {
        "href",
        "src",
        "action",
        "formaction",
        "data",
        "poster",
        "background",
        "codebase",
        "cite",
        "longdesc",
        "lowsrc",
        "dynsrc",
        "usemap",
        "ping",
        "manifest",
        "icon",
        "profile",
        "srcset",
        "imagesrcset",
        "archive",
        "classid",
    }  # fmt: skip
)
#: Attributes of (allowed) foreign content naming where a form is sent.
FORM_TARGETS = frozenset({"action", "formaction"})
#: Elements whose href may hold an embedded SVG image (rendered without scripts).
IMAGE_ELEMENTS = frozenset({"image", "feImage"})

#: data: URL types that carry markup or script (treated as script URLs).
MARKUP_DATA_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/javascript",
        "application/javascript",
        "application/ecmascript",
        "text/ecmascript",
        "text/xsl",
        "application/xslt+xml",
    }  # fmt: skip
)
SAFE_DATA_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/jpg",
        "image/gif",
        "image/webp",
        "image/bmp",
        "image/avif",
    }  # fmt: skip
)

_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]+")
#: What the URL standard strips at a URL's ends (C0 controls, space) and removes
#: anywhere (tab, newlines).
_URL_ENDS = "".join(map(chr, range(0x21)))
_TAB_OR_NEWLINE = re.compile(r"[\t\n\r]")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*:")
_CSS_COMMENT = re.compile(r"/\*.*?(?:\*/|\Z)", re.S)
_CSS_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})[ \t\r\n\f]?|(\r\n|[\n\r\f])|(.))", re.S)
#: Every url( and its argument, each read on its own (the match takes only "url(":
#: one argument read too far cannot hide the next url(), as a quoted one running
#: past a newline did), with CSS's white space (not a no-break space) and strings
#: as CSS ends them (at a newline too).
_CSS_URL = re.compile(r"url\((?=[ \t\n\r\f]*+(?:\"([^\"\n\r\f]*)|'([^'\n\r\f]*)|([^)]*)))", re.I)
_CSS_STRING_FUNC = re.compile(r"(?:image-set|image|cross-fade|src|element)\(", re.I)
_CSS_STRING = re.compile(r"\"([^\"\n\r\f]*)\"?|'([^'\n\r\f]*)'?")
#: A value substituted where it is used: var() (a custom property, inherited from
#: any element's style, or an @property's initial value), env(), attr(), a custom
#: --function() (@function's result). Inside a function taking strings as URLs
#: (image-set(var(--u) 1x)) it brings a string written elsewhere, never read there
#: as a URL.
#: (A name starts where no character of a CSS name precedes: each run of them is
#: read once, in linear time, and "xvar(" is another function.)
_CSS_NAME_CHAR = r"[\w\-\x80-\U0010ffff]"
_CSS_SUBSTITUTION = re.compile(
    rf"(?<!{_CSS_NAME_CHAR})(?:var|env|attr|--{_CSS_NAME_CHAR}*+)\(", re.I
)
_CSS_SCRIPT = re.compile(r"expression\s*\(|behavior\s*:|-moz-binding|@import", re.I)
#: The type pseudo-attribute of an xml-stylesheet instruction (lowered).
_PI_TYPE = re.compile(r"""(?:^|\s)type\s*=\s*(?:"([^"]*)"|'([^']*)')""")


#: The document's DOCTYPE with an internal subset: matched from the start of the text,
#: past the XML declaration, comments and processing instructions (each read once,
#: never given back: linear time; a search for "<!DOCTYPE" anywhere would read the
#: rest of the text again from every such string in a comment).
_INTERNAL_SUBSET = re.compile(
    r"\ufeff?(?:\s|<\?(?:[^?]|\?(?!>))*+\?>|<!--(?:[^-]|-(?!->))*+-->)*+"
    r"<!DOCTYPE\s++[^\s\[>]++(?:\s++(?:\"[^\"]*+\"|'[^']*+'|[^\s\[>\"']++))*+\s*+\["
)


class Refused(Exception):
    """The file is not processed; the message says why."""


def disarm(request: DisarmRequest) -> DisarmResult:
    try:
        data = request.source.read_bytes()
        root = _parse(data)
        rebuilder = _Rebuilder({s: request.switches.get(s, "sanitise") for s in SWITCHES})
        document = rebuilder.rebuild(root)
    except Refused as exc:
        return DisarmResult("unprocessable", reason=str(exc))
    except etree.XMLSyntaxError as exc:
        return DisarmResult("unprocessable", reason=f"not well-formed XML: {exc}")
    except RecursionError:
        return DisarmResult("unprocessable", reason="elements nested too deeply")

    blocked = [s for s in SWITCHES if rebuilder.found[s] and rebuilder.policy[s] == "disallow"]
    if blocked:
        actions = [Action(s, "blocked", rebuilder.detail(s)) for s in blocked]
        reasons = "; ".join(f"{s}: {rebuilder.detail(s)}" for s in blocked)
        return DisarmResult(
            "blocked", actions=actions, reason=f"disallowed by the policy ({reasons})"
        )

    request.destination.write_bytes(document)
    actions = [
        Action(s, "kept" if rebuilder.policy[s] == "allow" else "removed", rebuilder.detail(s))
        for s in SWITCHES
        if rebuilder.found[s]
    ]
    return DisarmResult("rebuilt", actions=actions)


# --------------------------------------------------------------------------- parsing


def _parse(data: bytes) -> etree._Element:
    parser = etree.XMLParser(
        resolve_entities=False,  # no entity expansion (billion laughs, XXE)
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        huge_tree=False,  # keep libxml2's depth and text-size limits
        remove_comments=True,
        remove_pis=False,  # xml-stylesheet PIs are reported
        strip_cdata=True,
        recover=False,
        # (not collect_ids=False: with it libxml2 tries to fetch an external DTD)
    )
    root = etree.fromstring(data, parser)
    # lxml raises only when libxml2's last message is an error: an error followed by a
    # warning (an undeclared prefix, then xml:space="x") would pass, and attributes
    # named "xlink:..." in no namespace with it.
    errors = [e for e in parser.error_log if e.level >= etree.ErrorLevels.ERROR]
    if errors:
        raise Refused(f"malformed XML: {errors[0].message} (line {errors[0].line})")
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None:
        # A plain <!DOCTYPE svg PUBLIC "..." "..."> is accepted (and not copied); an
        # internal subset [...] (entities, attribute defaults) is refused outright.
        text = data.decode(docinfo.encoding or "utf-8", "replace")
        if _INTERNAL_SUBSET.match(text):
            raise Refused("a DOCTYPE with an internal subset (entity or attribute declarations)")
        # Only a document with a DOCTYPE can hold entity references: without one, a
        # reference to an undeclared entity is a fatal error (XML's "Entity Declared"
        # constraint) and only the predefined ones exist, always replaced.
        if next(root.iter(etree.Entity), None) is not None:  # (filtered in C)
            raise Refused("entity references are not accepted")
    # Every node takes at least 3 bytes of the file ("<a/>", "<?a?>"): a small file
    # cannot hold too many, and is not walked to count them.
    if len(data) > 3 * MAX_ELEMENTS:
        count = sum(1 for _ in root.iter())
        if count > MAX_ELEMENTS:
            raise Refused(f"{count} nodes, more than {MAX_ELEMENTS}")
    ns, local = _split(root.tag)
    if local != "svg" or ns not in (SVG_NS, None):
        raise Refused(f"the root element is {root.tag!r}, not an SVG <svg>")
    return root


@functools.lru_cache(maxsize=4096)
def _split(tag: str) -> tuple[str | None, str]:
    """(namespace, local name) of a Clark-notation name."""
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return None, tag


# ------------------------------------------------------------------------ URLs, CSS


def classify_url(url: str, element: str = "") -> str:
    """``script``, ``external``, or ``internal`` (a fragment or a raster data: URL).

    A fragment as the URL standard reads one: once C0 controls and spaces are
    stripped at its ends and tabs and newlines removed, it starts with "#" (a DEL or
    a no-break space before the "#" makes a relative URL: a fetch from the server).
    Schemes are looked for with every control and space removed (browsers drop tabs
    and newlines anywhere: "java\tscript:" is javascript:), the risky reading."""
    # (Python counts every character of \x00-\x1f and \x7f as not printable: a
    # printable URL without a space has nothing to strip.)
    if url.isprintable() and " " not in url:
        std = norm = url
    else:
        std = _TAB_OR_NEWLINE.sub("", url.strip(_URL_ENDS))
        norm = _CONTROL_OR_SPACE.sub("", url)
    if not std or std.startswith("#"):
        return "internal"
    norm = norm.lower()
    if norm.startswith(SCRIPT_SCHEMES):
        return "script"
    if norm.startswith("data:"):
        mime = re.split(r"[;,]", norm[5:], maxsplit=1)[0]
        if mime in SAFE_DATA_TYPES or (mime == "image/svg+xml" and element in IMAGE_ELEMENTS):
            return "internal"
        return "script" if mime in MARKUP_DATA_TYPES else "external"
    return "external"  # absolute, protocol-relative or relative: fetched from elsewhere


def css_decode(text: str, comments: bool = True) -> str:
    """CSS as the browser's tokenizer sees it: comments gone (``comments``), escapes
    decoded (so ``u\\72l(`` and ``\\6a avascript:`` cannot hide from the checks)."""

    def unescape(m: re.Match[str]) -> str:
        if m.group(1):
            code = int(m.group(1), 16)
            return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"
        return "" if m.group(2) else m.group(3)

    if comments:
        text = _CSS_COMMENT.sub("", text)
    return _CSS_ESCAPE.sub(unescape, text).replace("\x00", "\ufffd")


def css_findings(text: str) -> list[tuple[str, str]]:
    """(switch, what) for every risky construct in a piece of CSS, read with its
    comments and without: "/*" in a string or a url() is no comment to the browser
    (CSS Syntax: comments come between tokens), and a "/*" string once hid every
    url() up to a "*/" string. (Both readings: each construct counted once.)"""
    found = Counter(_css_findings(css_decode(text)))
    if "/*" in text:
        found |= Counter(_css_findings(css_decode(text, comments=False)))
    return list(found.elements())


def _css_findings(css: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for m in _CSS_SCRIPT.finditer(css):
        found.append(("scripts", f"CSS {m.group(0).rstrip('(: ').lower()}"))
    urls = [next(g for g in m.groups() if g is not None) for m in _CSS_URL.finditer(css)]
    first = _CSS_STRING_FUNC.search(css)
    if first is not None:
        # Every string from the first function that takes one as a URL: its
        # arguments may hold parentheses of their own (image-set(url(#a) 2x, "https:
        # //..." 1x)), and a string that is no URL only errs towards removal.
        urls += [a or b for a, b in _CSS_STRING.findall(css, first.start())]
        if _CSS_SUBSTITUTION.search(css, first.start()):
            # What it brings is not known here: taken as external (Chromium fetched
            # "--u: 'https://...'" on a parent through image-set(var(--u) 1x)).
            found.append(("foreign_objects", "substituted value in a URL function in CSS"))
    for url in urls:
        kind = classify_url(url)
        if kind == "script":
            found.append(("scripts", "script URL in CSS"))
        elif kind == "external":
            found.append(("foreign_objects", "external url() in CSS"))
    return found


# -------------------------------------------------------------------------- rebuild


@dataclass
class _Rebuilder:
    policy: dict[str, str]
    found: dict[str, Counter[str]] = field(default_factory=dict)
    svg_default: bool = False  # a root <svg> without namespace: treat no-namespace as SVG

    def __post_init__(self) -> None:
        self.found = {s: Counter() for s in SWITCHES}

    def note(self, switch: str, what: str) -> bool:
        """Record a finding; True when the policy keeps it."""
        self.found[switch][what] += 1
        return self.policy[switch] == "allow"

    def detail(self, switch: str) -> str:
        return ", ".join(f"{n} × {what}" for what, n in sorted(self.found[switch].items()))

    # -- document

    def rebuild(self, root: etree._Element) -> bytes:
        """The rebuilt document, UTF-8 XML."""
        pis = self._stylesheets(root)
        if root.tag == _SVG_ROOT and root.prefix is None:
            body = self._fast(root)
            if body is None:
                self._prune(root)
                body = etree.tostring(root, encoding="UTF-8", xml_declaration=False)
        else:
            body = etree.tostring(self._copy(root), encoding="UTF-8", xml_declaration=False)
        head = b"".join(etree.tostring(pi, encoding="UTF-8") + b"\n" for pi in pis)
        return _XML_DECLARATION + head + body + b"\n"

    def _stylesheets(self, root: etree._Element) -> list[etree._Element]:
        """New copies of the xml-stylesheet instructions before the root the policy
        keeps (any other node outside the root element is never copied)."""
        kept = []
        for pi in reversed(list(root.itersiblings(preceding=True))):
            if isinstance(pi, etree._ProcessingInstruction) and pi.target == "xml-stylesheet":
                text = (pi.text or "").lower()
                # Only a CSS style sheet is one: browsers load XML types (text/xml,
                # application/xml, ...) as XSLT, which can write scripts.
                kind = _PI_TYPE.search(text)
                css = kind is not None and (kind[1] or kind[2] or "").strip() == "text/css"
                switch = "foreign_objects" if css and "xsl" not in text else "scripts"
                if self.note(switch, "xml-stylesheet instruction"):
                    kept.append(etree.ProcessingInstruction(pi.target, pi.text))
        return kept

    def _fast(self, root: etree._Element) -> bytes | None:
        """What :meth:`_prune` and the serialisation give for ``root`` (an unprefixed
        SVG <svg>), or None when this cannot tell (then the walk runs).

        The tree is serialised once by lxml: every start tag is then
        ``<name name="value"...>`` with ``"``, ``<``, ``>``, ``&`` and control
        characters escaped in values and ``<``, ``>`` in text, so compiled patterns
        read it token by token. They skip what the walk keeps unchanged (allowlisted
        SVG elements whose attributes are all allowlisted, with values the walk does
        not look into or that provably hold nothing risky) and return only the other
        start tags. Those are decided as the walk decides them, by name or by value,
        and removed with lxml operations; anything else (other namespaces, <style>,
        animations, foreign content, processing instructions, a risky value to
        remove...) returns None before the tree or the findings are touched."""
        text = etree.tostring(root, encoding="UTF-8")
        head = _ROOT_TAG.match(text)
        if head is None:
            return None
        # (the root's declarations as parsed: a value can read like one in the text)
        extra = {p: uri for p, uri in root.nsmap.items() if (p, uri) not in _STANDARD_NSMAP}
        editors = _editor_namespaces(extra)
        if editors is None:
            return None
        if b"xlink:" in text and root.nsmap.get("xlink") != XLINK_NS:
            return None  # (an undeclared prefix: the parser refuses it, never seen here)
        # (A processing instruction, or a namespace declaration below the root, is
        # among the exceptions below: not an allowlisted element or attribute.)
        lowered = text.lower()
        if any(word in lowered for word in _CSS_WORDS):
            return None
        if not _DEPTH_LIMITED and len(text) > 4 * MAX_DEPTH and _TOO_DEEP(root):
            return None  # (the walk refuses it)
        tags = _EXCEPTIONS.findall(text, head.end())
        policy = self.policy
        # -- decide (nothing changed yet)
        scripts: list[str] = []
        attributes: list[bytes] = []
        unknown: set[str] = set()  # SVG elements the allowlist does not know
        removed_tags = 0  # of editors' elements and unknown SVG ones
        for name, attrs, end in tags:
            if not end:
                continue  # (the end of the text)
            if name in _PLAIN_BYTES:
                attributes.append(attrs)
            else:
                local = name.decode()
                prefix, colon, rest = local.partition(":")
                if local.lower() == "script" or local in SCRIPT_ELEMENTS:
                    if policy["scripts"] == "allow" or ":" in local or b"xmlns" in attrs:
                        return None
                    scripts.append(local)
                elif b"xmlns" in attrs or (rest if colon else local).lower() == "script":
                    return None
                elif colon:
                    if prefix not in editors:
                        return None
                    removed_tags += 1  # (an editor's element: removed below)
                elif local in SVG_ELEMENTS or not _ELEMENT_NAME.fullmatch(local):
                    return None  # (or a comment, a processing instruction)
                else:
                    unknown.add(local)  # (removed below with what it holds)
                    removed_tags += 1
        found: list[tuple[str, str, int]] = []  # (switch, what, count)
        strip: list[str] = []
        pairs = _ATTRIBUTE_EXCEPTIONS.findall(b"".join(attributes))
        counts = Counter(name for name, _ in pairs if name)
        checked: dict[bytes, Counter[bytes]] = {}
        for raw, n in counts.items():
            name = _clark(raw, editors)
            if name is None or raw.startswith(b"xmlns"):
                return None
            kind = _KINDS[False, False].get(name) or _attribute_kind(name, False, False)
            if kind == _EVENT:
                found.append(("scripts", "event handler attribute", n))
                if policy["scripts"] != "allow":
                    strip.append(name)
                elif name[0] == "{" and not name.startswith(_XLINK_CLARK):
                    return None  # (kept, in a namespace whose other attributes go)
            elif kind == _DROP:
                # (Stripped everywhere: an <a> left, only a link, has no such attribute.)
                strip.append(name)
            elif kind == _VALUE or kind == _HREF:
                checked[raw] = Counter(value for key, value in pairs if key == raw)
            elif kind != _KEEP:
                return None
        for raw, values in checked.items():
            name = _clark(raw) or ""
            for value, n in values.items():
                decoded = _unescape(value.decode())
                if name in ("href", _XLINK_HREF):
                    if classify_url(decoded, "") != "internal":
                        return None  # (decided by the element's name)
                    continue
                if not ("(" in decoded or ":" in decoded or "\\" in decoded or name == "style"):
                    continue
                for switch, what in _value_findings(name, decoded):
                    found.append((switch, what, n))
                    if policy[switch] != "allow":
                        return None  # (removing it: by the walk)
        # Event attributes were skipped: counted here, in start tags (those of the
        # root and of removed elements aside).
        events: Counter[bytes] = Counter()
        if b" on" in lowered:
            # (_EVENT_IN_TEXT needs a '"' in a text: looked for first, more cheaply)
            if _QUOTE_IN_TEXT.search(text, head.end() - 1) and _EVENT_IN_TEXT.search(
                text, head.end() - 1
            ):
                return None  # (it would be counted as an attribute)
            if _EVENT_AT_VALUE_END_LOWER.search(lowered, head.end()):
                return None  # (perhaps a value ending in " onx=": see the pattern)
            events.update(_EVENT_ATTRIBUTES.findall(text, head.end()))
        for name, attrs, _ in tags:
            if name not in _PLAIN_BYTES and b" " in attrs:
                events.subtract(_EVENT_ATTRIBUTES.findall(attrs))
        if events.total():
            found.append(("scripts", "event handler attribute", events.total()))
            if policy["scripts"] != "allow":
                strip += [raw.decode() for raw, n in events.items() if n]
        if len(strip) > _MAX_STRIPPED_NAMES:
            # (lxml's strip_attributes compares every attribute with every name: 130,000
            # names of one attribute each took 5 s; the walk decides each by its name)
            return None
        # The elements to change: every <a> (each only a link: the other ones are in
        # ``tags``) and the scripts; for the links becoming groups, those in a text
        # container (when an element starts in one).
        unlink = policy["hyperlinks"] != "allow"
        links: list[etree._Element] = []
        removed: list[etree._Element] = []
        if scripts:  # (one pass for both)
            for el in root.iter(_SVG_A, *(f"{{{SVG_NS}}}{local}" for local in scripts)):
                if el.tag == _SVG_A:
                    links.append(el)
                elif len(el):
                    return None  # (what is inside a removed element is not looked at)
                else:
                    removed.append(el)
        else:
            links = list(root.iter(_SVG_A))
        in_text: set[etree._Element] = set()
        if links and unlink and _LINKS_MAY_BE_IN_TEXT.search(text, head.end()):
            in_text = {el for el in links if next(el.iterancestors(*_TEXT_TAGS), None) is not None}
        # An editor's elements (Inkscape, Sodipodi, RDF metadata) are removed with what
        # they hold, which the walk never looks at: only when they hold nothing else.
        # So are SVG elements the allowlist does not know (<metadata>).
        dropped: list[etree._Element] = []
        if removed_tags:
            uris = tuple(f"{{{uri}}}" for uri in set(editors.values()))
            names = {f"{{{SVG_NS}}}{local}" for local in unknown}
            found_elements = list(root.iter(*(f"{uri}*" for uri in uris), *names))
            if len(found_elements) != removed_tags:
                return None  # (the tree does not say what the text said)
            for el in found_elements:
                parent = el.getparent()
                if parent is not None and (parent.tag in names or parent.tag.startswith(uris)):
                    continue  # (inside another one: goes with it)
                for inner in el.iterdescendants():
                    tag = inner.tag
                    if not isinstance(tag, str) or not (tag in names or tag.startswith(uris)):
                        return None
                dropped.append(el)
        # -- apply
        count = len(root.attrib)
        self._prune_attributes(root, "svg", root.keys(), _values(root))
        changed = bool(scripts or strip or dropped) or len(root.attrib) != count
        _remove_all(dropped)
        for switch, what, n in found:
            self.found[switch][what] += n
        for el in removed:
            self.note("scripts", f"<{_split(el.tag)[1]}> element")
        _remove_all(removed)
        if links:
            self.found["hyperlinks"]["link"] += len(links)
            if unlink:
                # (When every href is the one of a link, stripped with the rest.)
                every = text.count(b'href="') == len(links)
                if every:
                    strip += [_XLINK_HREF, "href"]
                self._unlink(links, in_text, remove_href=not every)
                changed = True
        if strip:
            etree.strip_attributes(root, *strip)
            changed = True
        if extra:
            # Attributes with those prefixes were skipped (_PREFIXED): dropped. Then
            # only the root declares namespaces: the others than SVG and xlink are
            # unused, and removed as the walk removes them.
            etree.strip_attributes(root, *{f"{{{uri}}}*" for uri in extra.values()})
            etree.cleanup_namespaces(root, keep_ns_prefixes=["xlink"])
            changed = True
        if not changed:
            return text
        return etree.tostring(root, encoding="UTF-8", xml_declaration=False)

    @staticmethod
    def _unlink(
        links: list[etree._Element], in_text: set[etree._Element], remove_href: bool
    ) -> None:
        """What :meth:`_prune_children` does to an <a> that is only a link (one href,
        not a script URL; allowlisted attributes) when the link goes: the href is
        removed (here, or by the caller when not ``remove_href``) and the <a> becomes a
        group (a <tspan> inside text: ``in_text``)."""
        group, span = _SVG_TAG["g"], _SVG_TAG["tspan"]
        for el in links:
            if remove_href:
                attrib = el.attrib
                if _XLINK_HREF in attrib:
                    del attrib[_XLINK_HREF]
                else:
                    del attrib["href"]
            el.tag = span if el in in_text else group

    def _prune(self, root: etree._Element) -> None:
        """Allowlist ``root`` (an unprefixed SVG <svg>) where it is: every attribute,
        element and other node the copy of :meth:`_copy` would leave out is removed
        from the parsed tree, every element that needs a decision of its own is
        replaced by its rebuilt copy; the rest (allowlisted SVG elements and their
        allowlisted attributes, text) stays as parsed."""
        self._prune_attributes(root, "svg", root.keys(), _values(root))
        self._prune_children(root, in_text=False, depth=1)
        etree.cleanup_namespaces(root, keep_ns_prefixes=["xlink"])

    def _prune_children(self, parent: etree._Element, in_text: bool, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise Refused(f"elements nested more than {MAX_DEPTH} deep")
        plain = _PLAIN_SVG
        gone: list[etree._Element] = []  # (removed at the end: see _remove_all)
        for child in list(parent):  # (a snapshot: children are replaced or removed)
            tag = child.tag
            local = plain.get(tag)
            if local is not None:  # an allowlisted SVG element with no decision of its own
                names = child.keys()
                if names:
                    values = _values(child, names)
                    checked = _value_plan(tuple(names))
                    if checked is None:
                        self._prune_attributes(child, local, names, values)
                    elif "style" in names or not _plain_values("".join(values)):
                        self._prune_values(child, names, values, checked)
                if len(child) or depth >= MAX_DEPTH:
                    self._prune_children(child, in_text or local in TEXT_CONTAINERS, depth + 1)
                continue
            if tag == _SVG_A:
                # What _svg_element does for an <a>, where it is: renamed to a group
                # when its link goes.
                renamed = self._link(child, in_text)
                self._prune_attributes(
                    child, renamed, child.keys(), _values(child), unlinked=renamed != "a"
                )
                if renamed != "a":
                    child.tag = _SVG_TAG[renamed]
                self._prune_children(child, in_text, depth + 1)
                continue
            # Anything else is rebuilt as _copy does (added at the end of parent, then
            # put in the place of the original), or removed.
            tail = child.tail
            new = (
                self._element(child, parent, False, in_text, depth)
                if isinstance(tag, str)
                else None
            )
            if new is not None:
                parent.replace(child, new)
                new.tail = tail
                continue
            gone.append(child)  # the text after it belongs to the parent: it stays
        _remove_all(gone)

    def _prune_attributes(
        self,
        el: etree._Element,
        tag: str,
        names: list[str],
        values: list[str],
        unlinked: bool = False,
    ) -> None:
        """Remove from ``el`` (an SVG element) the attributes :meth:`_attributes`
        would not copy; ``names`` and ``values``: its attributes."""
        kept = self._kept_attributes(zip(names, values, strict=True), tag, False, unlinked)
        if len(kept) != len(names):
            attrib = el.attrib
            for name in names:
                if name not in kept:
                    del attrib[name]

    def _prune_values(
        self, el: etree._Element, names: list[str], values: list[str], checked: tuple[bool, ...]
    ) -> None:
        """:meth:`_prune_attributes` for attributes :func:`_value_plan` describes:
        ``_VALUE`` ones (``checked``) go by their value, ``_KEEP`` ones stay."""
        for name, value, check in zip(names, values, checked, strict=True):
            if (
                check
                and ("(" in value or ":" in value or "\\" in value or name == "style")
                and not all(
                    self.note(switch, what) for switch, what in _value_findings(name, value)
                )
            ):
                del el.attrib[name]

    def _copy(self, root: etree._Element) -> etree._Element:
        """A new document with the allowlisted copy of ``root`` (a root <svg> without
        namespace, or with a prefix)."""
        self.svg_default = _split(root.tag)[0] is None
        new_root = etree.Element(
            f"{{{SVG_NS}}}svg",
            self._attributes(root, "svg", foreign=False),
            nsmap={None: SVG_NS, "xlink": XLINK_NS},
        )
        new_root.text = root.text
        self._children(root, new_root, foreign=False, in_text=False, depth=1)
        # A leaf copied whole keeps the namespace declarations of its own start tag
        # (xmlns:inkscape="..."): those no element or attribute uses are removed.
        etree.cleanup_namespaces(new_root, keep_ns_prefixes=["xlink"])
        return new_root

    def _children(
        self, src: etree._Element, dst: etree._Element, foreign: bool, in_text: bool, depth: int
    ) -> None:
        if depth > MAX_DEPTH:
            raise Refused(f"elements nested more than {MAX_DEPTH} deep")
        last: etree._Element | None = None  # the last element added to dst
        # The text after children, joined once before the next element added (appended
        # one child at a time, the same text was copied again for every child dropped).
        pending: list[str] = []
        plain = _PLAIN_SVG_DEFAULT if self.svg_default else _PLAIN_SVG
        for child in src:
            tag = child.tag
            if not foreign and tag in plain:
                # Hot path: an allowlisted SVG element with no decision of its own
                # (what _svg_element does for it, without the checks that cannot apply).
                # Outside foreign content dst is always an SVG element: no nsmap.
                local = plain[tag]
                attributes = self._attributes(child, local, foreign=False)
                leaf = not len(child)  # (no child nodes of any kind but text)
                if leaf and tag[0] == "{" and child.prefix is None and depth < MAX_DEPTH:
                    # A leaf: copied by libxml2 (its text and the very attribute values
                    # checked above), minus the attributes not kept; a third of the cost
                    # of creating it. lxml drops the namespace declaration of its tag,
                    # redundant inside dst (rebuild() removes any other it brings).
                    added = child.__copy__()
                    added.tail = None
                    if len(attributes) != len(child.attrib):
                        copied = added.attrib
                        for name in child.keys():
                            if name not in attributes:
                                del copied[name]
                    dst.append(added)
                else:
                    added = etree.SubElement(dst, _SVG_TAG[local], attributes)
                    added.text = child.text
                if not leaf or depth >= MAX_DEPTH:  # (a leaf has nothing more to copy)
                    self._children(
                        child,
                        added,
                        foreign=False,
                        in_text=in_text or local in TEXT_CONTAINERS,
                        depth=depth + 1,
                    )
                if pending:
                    _append_text(dst, last, pending)
                    pending = []
                last = added
            elif isinstance(tag, str):
                added = self._element(child, dst, foreign, in_text, depth)
                if added is not None:  # (not truth-testing: a leaf element is falsy)
                    if pending:
                        _append_text(dst, last, pending)
                        pending = []
                    last = added
            if child.tail:
                # The text after a child belongs to the parent: it stays even when the
                # child is not copied. (Tracking ``last`` because len() of an lxml
                # element counts its children.)
                pending.append(child.tail)
        if pending:
            _append_text(dst, last, pending)

    # -- elements

    def _element(
        self, el: etree._Element, dst: etree._Element, foreign: bool, in_text: bool, depth: int
    ) -> etree._Element | None:
        """Copy one element (or not); returns the element added to ``dst``."""
        ns, local = _split(el.tag)
        if ns is None and self.svg_default and not foreign:
            ns = SVG_NS
        if local.lower() == "script" or (ns == SVG_NS and local in SCRIPT_ELEMENTS):
            if self.note("scripts", f"<{local}> element"):
                copy = _deep_copy(el)
                dst.append(copy)
                return copy
            return None
        if ns == SVG_NS:
            return self._svg_element(el, local, dst, in_text, depth)
        if ns in FOREIGN_NAMESPACES or (foreign and ns is None):
            if foreign or self.note("foreign_objects", f"<{local}> outside the SVG namespace"):
                return self._foreign_element(el, ns or XHTML_NS, local, dst, depth)
        return None  # any other namespace (editor metadata, RDF): never copied

    def _svg_element(
        self, el: etree._Element, local: str, dst: etree._Element, in_text: bool, depth: int
    ) -> etree._Element | None:
        if local not in SVG_ELEMENTS:
            return None
        if local == "foreignObject" and not self.note("foreign_objects", "<foreignObject>"):
            return None
        if local in ANIMATIONS:
            target = (el.get("attributeName") or "").strip().lower()
            # (any prefix: browsers resolve it, "l:href" bound to XLink is href)
            named = target.rsplit(":", 1)[-1]
            if named == "href" or named.startswith("on"):
                if not self.note("scripts", f"<{local}> changing {target}"):
                    return None
        if local == "style":
            return self._style_element(el, dst)
        tag = local
        if local == "a":
            tag = self._link(el, in_text)
        attributes = self._attributes(el, tag, foreign=False, unlinked=local == "a" and tag != "a")
        new = _sub(dst, SVG_NS, tag, attributes)
        new.text = el.text
        if local == "foreignObject":
            self._children(el, new, foreign=True, in_text=False, depth=depth + 1)
        else:
            self._children(
                el, new, foreign=False, in_text=in_text or local in TEXT_CONTAINERS, depth=depth + 1
            )
        return new

    def _link(self, el: etree._Element, in_text: bool) -> str:
        """The tag an <a> is rebuilt as: itself when its link is kept, else a group."""
        href = _href(el)
        if href is not None and classify_url(href) == "script":
            # The script URL itself is handled with the other attributes.
            keep_href = self.policy["scripts"] == "allow"
        else:
            keep_href = href is not None
        if keep_href and self.note("hyperlinks", "link"):
            return "a"
        return "tspan" if in_text else "g"

    def _style_element(self, el: etree._Element, dst: etree._Element) -> etree._Element | None:
        css = "".join(el.itertext())
        for switch, what in css_findings(css):
            if not self.note(switch, f"{what} in <style>"):
                return None
        kept = {n: v for n, v in el.items() if n in ("type", "media", "title")}
        new = _sub(dst, SVG_NS, "style", kept)
        new.text = css
        return new

    def _foreign_element(
        self, el: etree._Element, ns: str, local: str, dst: etree._Element, depth: int
    ) -> etree._Element | None:
        """An element of allowed foreign content (XHTML, MathML): copied with its
        attributes, minus anything the scripts switch removes."""
        if local.lower() in FOREIGN_ACTIVE and not self.note("scripts", f"<{local}> element"):
            return None
        if local.lower() == "style":
            css = "".join(el.itertext())
            if not all(self.note(s, f"{w} in <style>") for s, w in css_findings(css)):
                return None
        new = _sub(dst, ns, local, self._attributes(el, local, foreign=True))
        new.text = el.text
        self._children(el, new, foreign=True, in_text=False, depth=depth + 1)
        return new

    # -- attributes

    def _attributes(
        self, src: etree._Element, tag: str, foreign: bool, unlinked: bool = False
    ) -> dict[str, str]:
        """The allowed attributes of ``src``, to create its copy with. ``unlinked``: an
        <a> rebuilt as a group, whose href is dropped (a script URL in it is still
        reported)."""
        names = src.keys()
        pairs = zip(names, _values(src, names), strict=True)
        return self._kept_attributes(pairs, tag, foreign, unlinked)

    def _kept_attributes(
        self, items: Iterable[tuple[str, str]], tag: str, foreign: bool, unlinked: bool = False
    ) -> dict[str, str]:
        """:meth:`_attributes`, of the (name, value) pairs of an element."""
        kept: dict[str, str] = {}
        is_a = tag == "a"
        kinds = _KINDS[foreign, is_a]
        for name, value in items:
            kind = kinds.get(name) or _attribute_kind(name, foreign, is_a)
            if kind == _VALUE:
                # Only values with ":", "(" or "\\" can hold a URL, a CSS function or
                # an escape; style is CSS whatever it holds.
                if ("(" in value or ":" in value or "\\" in value or name == "style") and not all(
                    self.note(switch, what) for switch, what in _value_findings(name, value)
                ):
                    continue
                kept[name] = value
            elif kind == _KEEP:
                kept[name] = value
            elif kind == _HREF:
                if unlinked:
                    if classify_url(value) == "script":
                        self.note("scripts", "script URL in href")
                else:
                    self._href(tag, name, value, kept, foreign)
            elif kind == _EVENT:
                if self.note("scripts", "event handler attribute"):
                    kept[name] = value
            elif kind == _SRCDOC:
                if self.note("scripts", "srcdoc attribute"):
                    kept[name] = value
            elif kind == _FOREIGN_URL:
                self._foreign_url(name, value, kept)
            # _DROP: not copied
        return kept

    def _href(self, tag: str, name: str, value: str, kept: dict[str, str], foreign: bool) -> None:
        kind = classify_url(value, tag)
        if kind == "script":
            if self.note("scripts", "script URL in href"):
                kept[name] = value
        elif tag == "a" and not foreign:
            # The link itself: _link already asked the hyperlinks switch.
            kept[name] = value
        elif tag == "a" or foreign:
            # (in foreign content an XHTML <area>, and any MathML element: Firefox
            # follows a MathML href when it is clicked)
            if self.note("hyperlinks", "link"):
                kept[name] = value
        elif kind == "external":
            if foreign or self.note("foreign_objects", f"external reference in <{tag}>"):
                kept[name] = value
        else:
            kept[name] = value

    def _foreign_url(self, name: str, value: str, kept: dict[str, str]) -> None:
        parts = value.split(",") if name.lower().endswith("srcset") else [value]
        kinds = {classify_url(p.strip().split(" ")[0]) for p in parts}
        if "script" in kinds and not self.note("scripts", f"script URL in {name}"):
            return
        if name.lower() in FORM_TARGETS and not self.note("hyperlinks", f"form {name}"):
            return  # (where a form is sent when submitted: a link, clicked)
        kept[name] = value  # external URLs: the foreign content as a whole is allowed


# SVG elements _svg_element copies with no decision of its own: by Clark name (and,
# for a root <svg> without namespace, by bare name too) to their local name.
_PLAIN_LOCALS = SVG_ELEMENTS - ANIMATIONS - SCRIPT_ELEMENTS - {"a", "foreignObject", "style"}
_SVG_TAG = {local: f"{{{SVG_NS}}}{local}" for local in SVG_ELEMENTS}
_PLAIN_SVG = {f"{{{SVG_NS}}}{local}": local for local in _PLAIN_LOCALS}
_PLAIN_SVG_DEFAULT = {**_PLAIN_SVG, **{local: local for local in _PLAIN_LOCALS}}
_SVG_ROOT = f"{{{SVG_NS}}}svg"
_SVG_A = f"{{{SVG_NS}}}a"
_XML_DECLARATION = b"<?xml version='1.0' encoding='UTF-8'?>\n"


# ------------------------------------------------------------- serialised fast path


_XLINK_HREF = f"{{{XLINK_NS}}}href"
_XLINK_CLARK = f"{{{XLINK_NS}}}"
_TEXT_TAGS = tuple(f"{{{SVG_NS}}}{local}" for local in sorted(TEXT_CONTAINERS))
_PLAIN_BYTES = frozenset(local.encode() for local in _PLAIN_LOCALS)
#: The namespace declarations of a root the fast path takes as they are.
_STANDARD_NSMAP = frozenset({(None, SVG_NS), ("xlink", XLINK_NS)})
#: The start tag of the serialised root.
_ROOT_TAG = re.compile(rb"<svg(?= |/|>)[^>]*+>")
#: Words of CSS that run something (_CSS_SCRIPT, whose other case, @import, needs an
#: "@"): where the serialised document holds none, no value can.
_CSS_WORDS = (b"expression", b"behavior", b"-moz-binding")
#: A value in which _value_findings finds nothing, whatever the attribute: ASCII
#: without escapes, comments, quotes or "@" (so what CSS sees is the value as it is),
#: not starting with a letter of a script scheme, every url() a fragment or empty,
#: no function taking strings as URLs (_CSS_STRING_FUNC: a value substituted into
#: one, image-set(var(--u) 1x), is a finding without quotes; its "(" is told by the
#: name's ending, read only at a "(").
#: (With _CSS_WORDS absent from the document.)
_SAFE_VALUE = (
    rb"(?! *+[jvlmJVLM])"
    rb"(?:[^\"\\&'@/<>\x00-\x1f\x7f-\xffuU(]++|[uU](?![rR][lL]\()|[uU][rR][lL]\( *+[#)]"
    rb"|(?<![sS][eE][tT])(?<![gG][eE])(?<![dD][eE])(?<![sS][rR][cC])(?<![mM][eE][nN][tT])\()*+"
)
#: (Not "values": an animation's list, each item checked as a value of its own, a
#: script URL after a ";" too.)
_FINE_NAMES = _trie(SVG_ATTRIBUTES - {"style", "values"}, "xydwhrfsctoi").encode()
#: More attribute names to strip than this: the walk decides.
_MAX_STRIPPED_NAMES = 64
#: An attribute with a prefix other than xml, xmlns and xlink, not an event: the walk
#: drops it whatever its value (an editor's, inkscape:label say), and so does the
#: fast path, by namespace (the root declares every prefix on this path).
_PREFIXED = rb'| (?!xlink:|[xX][mM][lL])[A-Za-z_][\w.-]*+:(?![oO][nN])[\w.-]++="[^"]*+"'
#: An attribute the walk keeps unchanged on an SVG element, <a> or not: allowlisted
#: with a value it does not look into or a safe one, xml:space/xml:lang/xlink:title.
_FINE_NO_HREF = (
    rb"(?: (?:" + _FINE_NAMES + rb'|aria-[^\s=:"]++)="(?:[^"(:\\]*+"|' + _SAFE_VALUE + rb'")'
    rb'| style="' + _SAFE_VALUE + rb'"'
    rb'| (?:xml:space|xml:lang|xlink:title)="[^"]*+"' + _PREFIXED + rb")"
)
#: The same, plus, on an element not <a>, a fragment href (an internal reference:
#: kept) and an event attribute (counted and removed by name).
_FINE = rb"(?:" + _FINE_NO_HREF + rb'| (?:xlink:)?href="#[^"]*+"| [oO][nN][\w.-]*+="[^"]*+")'
#: A text container whose content holds a start tag (perhaps of an <a>).
_LINKS_MAY_BE_IN_TEXT = re.compile(rb"<(?:text|tspan|textPath)(?: [^>]*+)?(?<!/)>[^<]*+<(?!/)")
#: An event attribute, by name: in a start tag when no text holds the same
#: (_EVENT_IN_TEXT; every text follows a ">", which is escaped in texts and values),
#: since a value cannot hold the '"' it needs. Both patterns read each character a
#: bounded number of times.
_EVENT_ATTRIBUTES = re.compile(rb' ([oO][nN][\w.-]*+)="')
_EVENT_IN_TEXT = re.compile(rb'>[^<]*? [oO][nN][\w.-]*+="')
#: What _EVENT_ATTRIBUTES also finds at the end of a value (class="a onx="): there
#: its '"' closes the value, so a space, "/" or ">" follows. An event attribute whose
#: value starts with one of those looks the same: both go to the walk.
#: Searched in the lowercased text (bytes.lower() maps A-Z to a-z only: it matches
#: where ' [oO][nN][\w.-]*+="[ />]' would in the text, and faster).
_EVENT_AT_VALUE_END_LOWER = re.compile(rb' on[\w.-]*+="[ />]')
#: Where _EVENT_IN_TEXT matches, this does too (at the same ">", up to the first '"').
_QUOTE_IN_TEXT = re.compile(rb'>[^<"]*+"')
_PLAIN_NAMES = _trie(_PLAIN_LOCALS, "pgrcteluis").encode()
#: The attributes of an <a> that is only a link: one href that is not a script URL
#: (empty, or not starting with a character a script or data: URL can start with),
#: and fine attributes.
_LINK_START = re.escape(bytes(c for c in range(0x21, 0x7F) if chr(c) not in "\"&'<>jvlmdJVLMD"))
_SIMPLE_LINK = (
    _FINE_NO_HREF
    + rb'*+ (?:xlink:)?href="(?:['
    + _LINK_START
    + rb'][^"]*+)?"'
    + _FINE_NO_HREF
    + rb"*+"
)
#: Skips text, end tags, start tags of allowlisted SVG elements with fine attributes
#: and of <a> elements that are only a link; then returns the next other start tag
#: (name, attributes, its end), or the end of the text (three empty groups).
_EXCEPTIONS = re.compile(
    rb"(?:[^<]++|</[^>]++>|<(?:"
    + _PLAIN_NAMES
    + rb")"
    + _FINE
    + rb"*+/?>|<a(?=[ />])"
    + _SIMPLE_LINK
    + rb"/?>)*+(?:<([^\s/>]++)([^>]*?)(/?>)|\Z)"
)
#: In attributes of such start tags, run together: each one not fine (name, value).
_ATTRIBUTE_EXCEPTIONS = re.compile(_FINE + rb'*+(?: ([^\s=]++)="([^"]*+)"|\Z)')
#: An element's name with no prefix, as the serialisation writes it.
_ELEMENT_NAME = re.compile(r"[A-Za-z_][\w.-]*+")
_TOO_DEEP = etree.XPath("boolean(" + "/".join(["*"] * MAX_DEPTH) + ")")


def _depth_limited() -> bool:
    """Whether the parser itself refuses an element MAX_DEPTH levels below the root
    (libxml2 limits depth when huge_tree is off): then no parsed tree is too deep
    for the walk, and _TOO_DEEP need not look."""
    nested = "<g>" * MAX_DEPTH + "</g>" * MAX_DEPTH
    try:
        root = _parse(f'<svg xmlns="{SVG_NS}">{nested}</svg>'.encode())
    except etree.XMLSyntaxError:
        return True
    return not _TOO_DEEP(root)  # pragma: no cover (a parser without the limit)


_DEPTH_LIMITED = _depth_limited()


_CHARACTER_REFERENCE = re.compile(r"&(?:#(\d+)|#x([0-9a-fA-F]+)|(lt|gt|amp|quot|apos));")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}


def _unescape(value: str) -> str:
    """An attribute value as parsed, from its serialisation."""
    if "&" not in value:
        return value

    def char(m: re.Match[str]) -> str:
        if m.group(3):
            return _NAMED[m.group(3)]
        return chr(int(m.group(1)) if m.group(1) else int(m.group(2), 16))

    return _CHARACTER_REFERENCE.sub(char, value)


def _clark(raw: bytes, editors: dict[str, str] | None = None) -> str | None:
    """The Clark name of a serialised attribute name (only the xml, xlink and the
    ``editors`` prefixes are declared on this path), or None."""
    name = raw.decode()
    prefix, colon, local = name.partition(":")
    if not colon:
        return name
    if prefix == "xlink":
        return f"{{{XLINK_NS}}}{local}"
    if prefix == "xml":
        return f"{{{XML_NS}}}{local}"
    if editors and prefix in editors:
        return f"{{{editors[prefix]}}}{local}"
    return None


def _editor_namespaces(extra: dict[str | None, str]) -> dict[str, str] | None:
    """Prefix -> URI of the namespaces the root declares besides SVG and xlink, when
    each is an editor's (Inkscape, Sodipodi, RDF...: elements and attributes the
    walk never copies), or a prefix for SVG (``xmlns:svg``, whose use the fast path
    leaves to the walk); None for anything else (a second default namespace, XHTML
    or MathML, the xlink namespace or prefix bound otherwise, a URI lxml would read
    as a wildcard)."""
    editors: dict[str, str] = {}
    for prefix, uri in extra.items():
        if prefix is None or prefix in ("xlink", "xml") or "*" in uri:
            return None
        if uri in (XLINK_NS, XML_NS, "") or uri in FOREIGN_NAMESPACES:
            return None
        if uri != SVG_NS:
            editors[prefix] = uri
    return editors


#: More attributes than this on one element: their values are read through XPath.
#: lxml's values() and items() look each value up by its name, which takes time
#: growing with the square of their number (20,000 attributes: a second).
_MANY_ATTRIBUTES = 64
_ATTRIBUTE_VALUES = etree.XPath("@*")


def _values(el: etree._Element, names: list[str] | None = None) -> list[str]:
    """The values of ``el``'s attributes, in the order of ``el.keys()`` (``names``)."""
    if len(names if names is not None else el.attrib) <= _MANY_ATTRIBUTES:
        return el.values()
    return [str(value) for value in _ATTRIBUTE_VALUES(el)]


def _remove_all(elements: list[etree._Element]) -> None:
    """:func:`_remove` for many elements: the text after each one joined to the text
    before it once per run of removed siblings (one removal at a time appended to the
    same text again and again: 50,000 removed <q/> in a <text> took 21 s)."""
    by_parent: dict[etree._Element, set[etree._Element]] = {}
    for el in elements:
        parent = el.getparent()
        if parent is not None:
            by_parent.setdefault(parent, set()).add(el)
    for parent, doomed in by_parent.items():
        if len(doomed) == 1:
            _remove(next(iter(doomed)))
            continue
        anchor: etree._Element | None = None  # the last child kept: its tail, else text
        pending: list[str] = []
        for child in list(parent):
            if child in doomed:
                if child.tail:
                    pending.append(child.tail)
                parent.remove(child)
                continue
            if pending:
                _append_text(parent, anchor, pending)
                pending = []
            anchor = child
        if pending:
            _append_text(parent, anchor, pending)


def _append_text(parent: etree._Element, anchor: etree._Element | None, pieces: list[str]) -> None:
    """Put ``pieces`` after ``anchor`` (a child of ``parent``; None: at its start)."""
    if anchor is None:
        parent.text = (parent.text or "") + "".join(pieces)
    else:
        anchor.tail = (anchor.tail or "") + "".join(pieces)


def _remove(el: etree._Element) -> None:
    """Remove ``el`` and what is in it, leaving its tail text in place."""
    parent = el.getparent()
    tail = el.tail
    if tail:
        previous = el.getprevious()
        if previous is None:
            parent.text = (parent.text or "") + tail
        else:
            previous.tail = (previous.tail or "") + tail
    parent.remove(el)


# -------------------------------------------------------------- attribute decisions

# What to do with an attribute, by its (qualified) name alone; cached per
# (name, inside foreign content, on an <a>) since documents repeat the same names.
_DROP, _KEEP, _VALUE, _HREF, _EVENT, _SRCDOC, _FOREIGN_URL = range(1, 8)
#: (inside foreign content, on an <a>) -> attribute name -> kind.
_KINDS: dict[tuple[bool, bool], dict[str, int]] = {
    (foreign, is_a): {} for foreign in (False, True) for is_a in (False, True)
}
_FINDINGS: dict[tuple[str, str], list[tuple[str, str]]] = {}
_CACHE_LIMIT = 50_000


def _attribute_kind(name: str, foreign: bool, is_a: bool) -> int:
    ns, local = _split(name)
    lower = local.lower()
    if lower.startswith("on"):
        kind = _EVENT
    elif ns == XML_NS:
        kind = _KEEP if local in ("space", "lang") else _DROP  # xml:base moves URLs
    elif local == "href" and ns in (None, XLINK_NS):
        kind = _HREF
    elif ns == XLINK_NS:
        kind = _KEEP if local in XLINK_ATTRIBUTES and (is_a or local == "title") else _DROP
    elif ns is not None:
        kind = _DROP  # editor namespaces
    elif foreign:
        if lower == "srcdoc":
            kind = _SRCDOC
        elif lower in FOREIGN_URL_ATTRIBUTES:
            kind = _FOREIGN_URL
        else:
            kind = _VALUE
    elif (
        local in SVG_ATTRIBUTES or lower.startswith("aria-") or (is_a and local in LINK_ATTRIBUTES)
    ):
        kind = _VALUE
    else:
        kind = _DROP
    cache = _KINDS[foreign, is_a]
    if len(cache) < _CACHE_LIMIT:
        cache[name] = kind
    return kind


def _value_findings(name: str, value: str) -> list[tuple[str, str]]:
    """Attribute values are CSS-ish (fill="url(...)", style="..."): what is risky in
    one, as (switch, what). Pure, so cached: drawings repeat the same values."""
    key = (name, value)
    found = _FINDINGS.get(key)
    if found is None:
        local = _split(name)[1]
        # (an animation's values: a list, each item a value of its own)
        items = value.split(";") if local == "values" else [value]
        if any(_CONTROL_OR_SPACE.sub("", v).lower().startswith(SCRIPT_SCHEMES) for v in items):
            found = [("scripts", f"script URL in {local}")]
        else:
            found = [(s, f"{w} in {local}") for s, w in css_findings(value)]
        if len(_FINDINGS) < _CACHE_LIMIT:
            _FINDINGS[key] = found
    return found


_VALUE_PLANS: dict[tuple[str, ...], tuple[bool, ...] | None] = {}


def _value_plan(names: tuple[str, ...]) -> tuple[bool, ...] | None:
    """For attributes on an SVG element other than <a> outside foreign content: which
    are ``_VALUE`` (True) and ``_KEEP`` (False) ones, or None when any is of another
    kind. (Values without any character _plain_values looks for, of attributes
    other than ``style``, are then all copied as they are.)"""
    try:
        return _VALUE_PLANS[names]
    except KeyError:
        pass
    kinds = _KINDS[False, False]
    found = [kinds.get(name) or _attribute_kind(name, False, False) for name in names]
    plan = tuple(k == _VALUE for k in found) if set(found) <= {_KEEP, _VALUE} else None
    if len(_VALUE_PLANS) < _CACHE_LIMIT:
        _VALUE_PLANS[names] = plan
    return plan


def _plain_values(values: str) -> bool:
    """True when no value (``values``: all of an element's, joined) holds a character
    that makes _attributes look into it: "(", ":" or "\\"."""
    return "(" not in values and ":" not in values and "\\" not in values


# ----------------------------------------------------------------------------- tree


def _sub(parent: etree._Element, ns: str, local: str, attributes: dict[str, str]) -> etree._Element:
    """A child element; a namespace other than the parent's becomes the new default
    (no generated ``ns0:`` prefixes)."""
    if _split(parent.tag)[0] == ns:
        return etree.SubElement(parent, f"{{{ns}}}{local}", attributes)
    return etree.SubElement(parent, f"{{{ns}}}{local}", attributes, nsmap={None: ns})


def _href(el: etree._Element) -> str | None:
    value = el.get(f"{{{XLINK_NS}}}href")
    return value if value is not None else el.get("href")


def _deep_copy(el: etree._Element) -> etree._Element:
    """A kept script, copied as it is (scripts=allow)."""
    copy = etree.fromstring(etree.tostring(el, with_tail=False))
    return copy
