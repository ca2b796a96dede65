"""HTML files: sanitised with nh3 (ammonia, an html5ever-based allowlist sanitiser).

For HTML delivered as a file (the pipeline relays browsed pages by default before any
engine is involved). Family ``html`` has no policy switches: the file is always
sanitised. The body is cleaned by nh3 against a conservative allowlist (text
formatting, headings, lists, tables, links, images; no script, style, iframe,
object, embed, form, SVG/MathML, no event handlers, no ``javascript:``/``data:``
URLs except raster ``data:image`` in ``<img src>``), then a new document is written
around it: ``<!DOCTYPE html>``, ``<html lang>``, ``<meta charset="utf-8">``, a
Content-Security-Policy ``<meta>`` forbidding scripts, plugins, frames and forms (a
second line of defence), and the original ``<title>`` as text. The output is UTF-8.

The result is ``unmodified`` only when that rebuilt document is the input itself
(e.g. a file gicap already rebuilt); any difference is ``rebuilt``: comparing
anything looser than the exact text could deliver markup a browser reads differently.
"""

from __future__ import annotations

import codecs
import html
import re
from collections import Counter

import nh3

from gicap.cdr.types import Action, DisarmRequest, DisarmResult
from gicap_media.svg import css_decode

#: Elements kept (their attributes: see ATTRIBUTES). Everything else is unwrapped
#: (its text kept) or, for CONTENT_REMOVED, dropped with its content.
TAGS = frozenset(
    """
    a abbr acronym address article aside b bdi bdo big blockquote br caption center cite
    code col colgroup dd del details dfn div dl dt em figcaption figure footer h1 h2 h3
    h4 h5 h6 header hgroup hr i img ins kbd li main mark nav ol p pre q rp rt ruby s samp
    section small span strike strong sub summary sup table tbody td tfoot th thead time
    tr tt u ul var wbr
    """.split()
)
#: Removed together with everything inside them (their text is code, not content).
CONTENT_REMOVED = frozenset(
    """
    script style title iframe frame frameset noframes noembed object applet template
    xmp svg math select datalist textarea
    """.split()
)
GENERIC_ATTRIBUTES = frozenset({"title", "lang", "dir", "class", "id", "style", "role"})
ATTRIBUTES: dict[str, set[str]] = {
    "*": set(GENERIC_ATTRIBUTES),
    "a": {"href", "hreflang", "name"},
    "img": {"src", "alt", "width", "height", "loading"},
    "td": {"colspan", "rowspan", "headers", "align", "valign"},
    "th": {"colspan", "rowspan", "headers", "scope", "abbr", "align", "valign"},
    "table": {"summary", "width", "border", "cellpadding", "cellspacing", "align"},
    "col": {"span", "width", "align"},
    "colgroup": {"span", "width", "align"},
    "ol": {"start", "reversed", "type"},
    "ul": {"type"},
    "li": {"value"},
    "time": {"datetime"},
    "del": {"datetime"},
    "ins": {"datetime"},
    "details": {"open"},
    "p": {"align"},
    "div": {"align"},
    "h1": {"align"},
    "h2": {"align"},
    "h3": {"align"},
    "h4": {"align"},
    "h5": {"align"},
    "h6": {"align"},
}
URL_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
#: CSS properties kept in style attributes: none of them takes a URL.
STYLE_PROPERTIES = frozenset(
    """
    color background-color font font-family font-size font-style font-weight
    font-variant line-height letter-spacing word-spacing text-align text-decoration
    text-indent text-transform white-space vertical-align direction margin margin-top
    margin-right margin-bottom margin-left padding padding-top padding-right
    padding-bottom padding-left border border-top border-right border-bottom border-left
    border-color border-style border-width border-collapse border-spacing border-radius
    width height max-width max-height min-width min-height display float clear
    list-style-type caption-side empty-cells table-layout
    """.split()
)
SAFE_DATA_IMAGES = ("image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.I)

CSP = (
    "script-src 'none'; object-src 'none'; frame-src 'none'; child-src 'none'; "
    "worker-src 'none'; base-uri 'none'; form-action 'none'"
)

#: Reported groups of what was removed.
SCRIPT_TAGS = frozenset({"script", "noscript"})
ACTIVE_TAGS = frozenset(
    """
    iframe frame frameset object embed applet form input button select textarea base link
    portal svg math template
    """.split()
)
URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "data", "poster", "background"})
#: Structure of the document, rebuilt by this module rather than cleaned.
STRUCTURE = frozenset({"html", "head", "body", "title"})


def _data_url_filter(tag: str, attribute: str, value: str) -> str | None:
    """data: URLs only for raster images in <img src> (nh3's scheme list cannot say
    which data: types are fine)."""
    if attribute in ("href", "src"):
        norm = _CONTROL_OR_SPACE.sub("", value).lower()
        if norm.startswith("data:"):
            ok = tag == "img" and attribute == "src" and norm[5:].startswith(SAFE_DATA_IMAGES)
            return value if ok else None
    return value


#: CSS that runs something in old Internet Explorer (``expression()``) or attaches a
#: behaviour or binding: nh3 keeps the value of an allowlisted property as it is.
_CSS_SCRIPT_WORDS = ("expression", "behavior", "-moz-binding")


def _style_filter(tag: str, attribute: str, value: str) -> str | None:
    """A style attribute holding CSS that runs something is dropped whole (decoded
    as the browser's tokenizer reads it: comments and escapes cannot hide it)."""
    if attribute == "style":
        decoded = css_decode(value).lower()
        if any(word in decoded for word in _CSS_SCRIPT_WORDS):
            return None
    elif attribute in ("href", "src"):
        return _data_url_filter(tag, attribute, value)
    return value


_URL_NOISE = re.compile(r"[\t\n\r]")
_C0_AND_SPACE = "".join(map(chr, range(0x21)))


def _relative_url(url: str) -> str | None:
    """A relative URL as a browser resolves it against a saved page (file:): one
    starting with two slashes or backslashes (tabs and line breaks dropped, as URL
    parsing drops them) names another host, which Windows reaches over SMB with the
    user's credentials: dropped. The others stay (files beside the page)."""
    # (URL parsing strips every leading C0 control and space first)
    start = _URL_NOISE.sub("", url).lstrip(_C0_AND_SPACE)[:2].replace("\\", "/")
    return None if start == "//" else url


def _remote(url: str) -> bool:
    """Whether an <img src> (as nh3 keeps it: http, https, data: or relative) is
    fetched from another host: an absolute http(s) URL, control characters and spaces
    aside ("ht\ttp:", "http:\\\\host" are read so by browsers)."""
    return _CONTROL_OR_SPACE.sub("", url).lower().startswith(("http:", "https:"))


def _local_images_filter(tag: str, attribute: str, value: str) -> str | None:
    """No <img src> from another host (see ``external_images``); the other filters."""
    if tag == "img" and attribute == "src" and _remote(value):
        return None
    return _style_filter(tag, attribute, value)


def _cleaner(data_urls: bool, styles: bool = False, local_images: bool = False) -> nh3.Cleaner:
    attribute_filter = (
        _local_images_filter
        if local_images
        else _style_filter
        if styles
        else _data_url_filter
        if data_urls
        else None
    )
    return nh3.Cleaner(
        tags=set(TAGS),
        clean_content_tags=set(CONTENT_REMOVED),
        attributes={k: set(v) for k, v in ATTRIBUTES.items()},
        # A Python callback per attribute costs about half of nh3's time: only used
        # (with the data: scheme) when the document has a data: URL at all.
        attribute_filter=attribute_filter,
        strip_comments=True,
        link_rel="noopener noreferrer",
        url_schemes=set(URL_SCHEMES | {"data"} if data_urls else URL_SCHEMES),
        url_relative=_relative_url,
        filter_style_properties=set(STYLE_PROPERTIES),
    )


_CLEANERS = {data_urls: _cleaner(data_urls) for data_urls in (False, True)}
_STYLE_CLEANERS = {data_urls: _cleaner(data_urls, styles=True) for data_urls in (False, True)}
_LOCAL_IMAGE_CLEANERS = {
    data_urls: _cleaner(data_urls, local_images=True) for data_urls in (False, True)
}

#: An <img> start tag as nh3 writes it (every attribute name="value", with '"' and "&"
#: escaped in the value; "<" in text is escaped, so this is a tag), and its src.
_IMG_TAG = re.compile(r'<img((?:\s[^\s="/>]+="[^"]*")*)\s*/?>')
_SRC = re.compile(r'\ssrc="([^"]*)"')


def remote_images(body: str) -> int:
    """The <img> elements of ``body`` (nh3's output) whose picture comes from another
    host."""
    if "<img" not in body:
        return 0
    count = 0
    for tag in _IMG_TAG.finditer(body):
        src = _SRC.search(tag.group(1))
        count += src is not None and _remote(html.unescape(src.group(1)))
    return count


def clean(text: str, lower: str | None = None) -> str:
    """The body of ``text`` (a whole document or a fragment) through nh3. ``lower``:
    ``lowered(text)``, when the caller already has it."""
    # Without the literal "data:" (any case) nothing can be a data: URL the callback
    # should see; an obfuscated one ("da&#9;ta:") then simply finds data: not allowed.
    # (A substring test on the lowered text: a case-insensitive regex search costs
    # a quarter of nh3's own time.)
    if lower is None:
        lower = lowered(text)
    return _clean(text, "data:" in lower)


def _clean(text: str, data_urls: bool) -> str:
    """:func:`clean`, told whether "data:" (any case) occurs in ``text``."""
    out = _CLEANERS[data_urls].clean(text)
    # (nh3 writes every attribute it keeps as name="value", its name lowercased: an
    # output without 'style="' keeps no style attribute to look into)
    if 'style="' not in out:
        return out
    cleaned = out.lower()
    if "\\" in cleaned or any(word in cleaned for word in _CSS_SCRIPT_WORDS):
        # (nh3 writes a kept style with its escapes decoded: a word that shows
        # nowhere in an output without backslashes is in no kept style either)
        out = _STYLE_CLEANERS[data_urls].clean(text)
    return out


def disarm(request: DisarmRequest) -> DisarmResult:
    raw = request.source.read_bytes()
    text = decode(raw)
    lower = lowered(text)
    depth, work = _nesting(text, lower)
    if depth > MAX_NESTING:
        return DisarmResult(
            "unprocessable", reason=f"elements nested {depth} deep, more than {MAX_NESTING}"
        )
    if work > MAX_PARSE_WORK:
        return DisarmResult(
            "unprocessable",
            reason=f"elements nested up to {depth} deep: parsing would search or rebuild "
            f"open elements about {work} times, more than {MAX_PARSE_WORK}",
        )
    escaping = _escaping_work(text)
    if escaping > MAX_ESCAPING_WORK:
        return DisarmResult(
            "unprocessable",
            reason=f"text the cleaner writes back with entities (& and no-break spaces) "
            f"would cost about {escaping} steps, more than {MAX_ESCAPING_WORK}",
        )
    # One scan for both "data:" and "javascript:"/"vbscript:" (their endings).
    schemes = set(_SCHEME_COLON.findall(lower))
    data_urls = "data" in schemes
    body = _clean(text, data_urls)
    # Pictures from another host: fetched as the page is opened (a tracking pixel, the
    # reader's address and time to whoever wrote the file). Looked for in nh3's
    # output, written one way; only a page holding one is cleaned again without them.
    remote = remote_images(body)
    images = request.switches.get("external_images", "sanitise")
    if remote and images == "disallow":
        action = Action("external_images", "blocked", f"{remote} × remote image")
        return DisarmResult(
            "blocked",
            actions=[action],
            reason=f"disallowed by the policy (external_images: {action.detail})",
        )
    if remote and images != "allow":
        body = _LOCAL_IMAGE_CLEANERS[data_urls].clean(text)
    if len(body) > max(MAX_REBUILT_CHARS, MAX_GROWTH * len(text)):
        # (what the estimates allow may still copy long attributes many times: a
        # 48 KB page made 80 MB)
        return DisarmResult(
            "unprocessable",
            reason=f"the rebuilt page would be {len(body)} characters, "
            f"{len(body) // max(len(text), 1)} times the page",
        )
    title, lang, found = _inventory(text, lower, data_urls, "ript" in schemes)
    document = _document(body, title, lang)
    actions = _actions(found)
    if remote:
        kept = images == "allow"
        actions.append(
            Action("external_images", "kept" if kept else "removed", f"{remote} × remote image")
        )
    if _same(raw, text, document):
        return DisarmResult("unmodified", actions=actions)
    request.destination.write_bytes(document.encode("utf-8"))
    return DisarmResult("rebuilt", actions=actions)


# ------------------------------------------------------------------------- nesting

#: html5ever (like the HTML spec) searches the stack of open elements for every block
#: start tag, so a page of N nested <div>s costs N² (100,000 of them: 20 s). Files
#: nested deeper than this are refused; browsers flatten beyond 512 levels anyway.
MAX_NESTING = 10_000
#: And many tags make html5ever search the whole stack (for a <p> to close, say), or
#: rebuild the formatting elements left open (<b>, <font>... closed by another
#: element's end tag): a page whose tags times its depth, plus its tags times those
#: formatting elements, is more than this is refused too (9,999 nested <div>s and
#: then a million <li>s would take minutes). About five seconds of parsing (a page
#: of 10 MB nested 50 deep is half of it).
MAX_PARSE_WORK = 1_000_000_000
#: A rebuilt page may be this many times the page (escaping a no-break space writes
#: six characters), or this many characters, whichever is more.
MAX_GROWTH = 32
MAX_REBUILT_CHARS = 16 * 1024 * 1024
#: nh3 writes a text's "&" and no-break spaces back as entities at a cost of the
#: text's length for each (1 MB of no-break spaces in one paragraph took 20 s, from
#: 1 KB gzip-encoded): the sum, over texts, of their length times their number, at
#: most this (about 3 s).
MAX_ESCAPING_WORK = 300_000_000_000
#: Texts shorter than this cost little whatever they hold (at most 10^8 each).
_LONG_TEXT = re.compile(r"[^<]{10000,}")
#: Elements that never stay open: void elements and those whose end tag is implied
#: by the next sibling. List items, cells and rows, ruby text and option groups are
#: apart (see _ITEMS): they do nest in some places.
_NOT_NESTING = frozenset(
    """
    area base br col embed hr img input link meta source track wbr param keygen frame
    tbody thead tfoot colgroup caption html head body
    """.split()
)
#: Elements a list item passes looking for the open item it closes (the HTML spec's
#: list item rule: any but special elements, and address, div, p).
_PHRASING = frozenset(
    """
    a abbr b bdi bdo big cite code data dfn em font i kbd mark nobr q s samp small span
    strike strong sub sup time tt u var address div p
    """.split()
)
#: An item that closes the open item of its kind when it starts (an unclosed <li>
#: does not nest the next <li>), but stays open inside a list it holds (<ul><li><ul>
#: <li>... nests): item -> (the items it closes, the elements that stop the search,
#: whether it passes only _PHRASING elements or anything, how far down it looks, the
#: element that must be open for it to close anything (ruby text outside a <ruby>
#: nests; see _Stack.context_open). Beyond that it is taken as nesting: an
#: over-estimate, never an under-estimate. (Options and option groups: in _scan.)
_ITEMS: dict[str, tuple[frozenset[str], frozenset[str], bool, int, str | None]] = {
    "li": (frozenset({"li"}), frozenset({"ul", "ol", "menu"}), True, 16, None),
    "dd": (frozenset({"dd", "dt"}), frozenset({"dl"}), True, 16, None),
    "dt": (frozenset({"dd", "dt"}), frozenset({"dl"}), True, 16, None),
    # a cell closes the row's open cell and what is in it; a row the open row
    "td": (frozenset({"td", "th"}), frozenset({"tr", "table", "template"}), False, 32, "table"),
    "th": (frozenset({"td", "th"}), frozenset({"tr", "table", "template"}), False, 32, "table"),
    "tr": (frozenset({"tr"}), frozenset({"table", "template"}), False, 32, "table"),
    # only when it is the current element
    "rb": (frozenset({"rb", "rt", "rp", "rtc"}), frozenset(), False, 1, "ruby"),
    "rt": (frozenset({"rb", "rt", "rp"}), frozenset(), False, 1, "ruby"),
    "rp": (frozenset({"rb", "rt", "rp"}), frozenset(), False, 1, "ruby"),
    "rtc": (frozenset({"rb", "rt", "rp", "rtc"}), frozenset(), False, 1, "ruby"),
}
#: Formatting elements: left open when another element's end tag closes them, the
#: parser rebuilds them for every later tag and text, until a marker (a cell, a
#: caption...) that was open before closes; at most three alike (same attributes).
_FORMATTING = frozenset("a b big code em font i nobr s small strike strong tt u".split())
#: Start tags that close an open p in button scope (the HTML spec's "in body" rules;
#: not <table>, which does so in no-quirks mode only). A p the model kept open that
#: the parser had closed let a later </p> pop what was really open above it.
_CLOSES_P = frozenset(
    """
    p address article aside blockquote center details dialog dir div dl fieldset
    figcaption figure footer header hgroup main menu nav ol search section summary ul
    h1 h2 h3 h4 h5 h6 pre listing form hr xmp plaintext li dd dt
    """.split()
)
#: Cells and rows: ignored outside a table (or a template).
_TABLE_ONLY = frozenset({"td", "th", "tr"})
_MARKERS = frozenset("td th caption object applet marquee template".split())
_ALIKE = 3
#: What rebuilding one formatting element costs, in steps of a search of the stack
#: (creating an element: measured about 200 times as long).
REBUILD_COST = 200
#: Foreign content, where "/>" closes an element.
_FOREIGN = frozenset({"svg", "math"})


def _escaping_work(text: str) -> int:
    """An upper estimate of ``MAX_ESCAPING_WORK``'s cost: 0 when even the whole page
    as one text stays within it, else summed over its long texts (between tags)."""
    escapes = text.count("&")
    if not text.isascii():  # (known without reading the text: ASCII has no U+00A0)
        escapes += text.count("\u00a0")
    if escapes * len(text) <= MAX_ESCAPING_WORK:
        return 0
    return sum(
        (m.end() - m.start()) * (m[0].count("&") + m[0].count("\u00a0"))
        for m in _LONG_TEXT.finditer(text)
    )


def _nesting(text: str, lower: str) -> tuple[int, int]:
    """Upper estimates of how deep the elements of a page nest (``text``, and
    ``lower``: it lowered) and of the parsing work (in steps of a search of the
    stack: the depth at every tag, and the formatting elements rebuilt); (0, 0) when
    neither can be high."""
    tags = lower.count("<")
    if tags <= 64:
        return 0, 0
    # The formatting elements the parser may rebuild for every tag: three alike (same
    # name and attributes) at most, and one <a> (the longest); each costs with its
    # attributes. (Names matched as in the lowered text, attributes compared as
    # written.)
    alike = set(_FORMATTING_TAG_WRITTEN.findall(text))
    # (every <a> measured: a search for one of many characters counted a quoted value
    # as one, and missed an <a> whose one href filled 100 KB, copied 9,000 times)
    longest_a = max(_SHORT_A, max(map(len, _A_TAG.findall(lower)), default=0))
    rebuild = REBUILD_COST + ATTRIBUTE_COST * longest_a
    rebuild += _ALIKE * sum(REBUILD_COST + ATTRIBUTE_COST * len(tag) for tag in alike)
    # Elements cannot nest deeper than start tags are written ("<" not "</") and
    # formatting elements rebuilt (counted twice: <a>s, one a cell, are too).
    opened = tags - lower.count("</")
    if opened <= MAX_NESTING and (2 * opened + rebuild) * tags <= MAX_PARSE_WORK:
        return 0, 0
    # Else the tags are read one by one, as the parser reads them.
    return _scan(text, lower, list(_NESTING_TOKEN.finditer(lower)))


#: A tag's name as the tokenizer reads it (up to white space, "/" or ">").
_NESTING_TOKEN = re.compile(r"<(/?[a-z][^\t\n\f\r />]*+)")
#: The attributes of a start tag as the tokenizer reads them: names, and values
#: (quoted ones whole: a quote opens a value only after "=", elsewhere it is part of
#: a name or a value, as in x' or title=x'; read as opening one, it hid a 100 KB
#: value from the measure of the tag).
_ATTRIBUTES = (
    r"""(?:[\t\n\f\r ]++|/(?!>)|[^\t\n\f\r />][^\t\n\f\r />=]*+"""
    r"""(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+(?:"[^"]*+"|'[^']*+'|[^\t\n\f\r >]++))?)*+/?>?"""
)
#: What a rebuilt formatting element costs per character of its start tag (its
#: attributes are copied each time).
ATTRIBUTE_COST = 10
#: A formatting start tag but <a> (see _FORMATTING), and an <a> start tag, in the
#: lowered page. (The lookahead on the first
#: letters of the names changes no match: it turns most other tags away with one
#: test, where the case-insensitive alternation below tries each name in turn.)
_FORMATTING_TAG = re.compile(
    r"<(?=[bcefinstu])(?:b|big|code|em|font|i|nobr|s|small|strike|strong|tt|u)"
    r"(?=[\t\n\f\r />])" + _ATTRIBUTES
)
#: The same tags as written: the names matched as the lowered page matches them
#: (ASCII letters in any case; no other letter lowers into ASCII there).
_FORMATTING_TAG_WRITTEN = re.compile(_FORMATTING_TAG.pattern, re.IGNORECASE | re.ASCII)
_A_TAG = re.compile(r"<a(?=[\t\n\f\r />])" + _ATTRIBUTES)
#: The length of <a> start tag assumed at least (the estimates only err upwards).
_SHORT_A = 256
#: Elements whose text the tokenizer reads as text up to their end tag (in HTML).
_RAW_TEXT = frozenset("script style textarea title xmp iframe noembed noframes".split())
#: The HTML spec's special elements: an end tag of another element does not close
#: them (nor what they hold); a formatting end tag above one runs the adoption agency.
_SPECIAL = frozenset(
    """
    address applet area article aside base basefont bgsound blockquote body br button
    caption center col colgroup dd details dir div dl dt embed fieldset figcaption figure
    footer form frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr html iframe img
    input keygen li link listing main marquee menu meta nav noembed noframes noscript
    object ol p param plaintext pre script search section select source style summary
    table tbody td template textarea tfoot th thead title tr track ul wbr xmp
    mi mo mn ms mtext annotation-xml foreignobject desc
    """.split()
)
#: What ends the default scope (an end tag of a special element closes nothing
#: beyond it), with ol/ul and button for the list item and button scopes.
_SCOPE = frozenset(
    """
    applet caption html table td th marquee object template mi mo mn ms mtext
    annotation-xml foreignobject desc title ol ul button
    """.split()
)
#: HTML integration points, where foreign content holds HTML again.
_INTEGRATION = frozenset("foreignobject desc title mi mo mn ms mtext annotation-xml".split())
#: Start tags that leave foreign content (the parser pops it): "/>" means nothing then.
_BREAKOUT = frozenset(
    """
    b big blockquote body br center code dd div dl dt em embed h1 h2 h3 h4 h5 h6 head hr
    i img li listing menu meta nobr ol p pre ruby s small span strong strike sub sup
    table tt u ul var font
    """.split()
)
#: The rest of a tag as the tokenizer reads it: attributes (a name, then perhaps
#: "=" and a value: quoted values read whole, an unquoted one up to white space or
#: ">", so "a=x/" ends in "x/"), white space and stray "/"s, then "/>" or ">".
#: Without a match the tag runs to the end of the page (a quote or the tag never
#: closes): the tokenizer reads no tag after it.
_TAG_REST = re.compile(
    r"""(?:[\t\n\f\r ]++|/(?!>)|[^\t\n\f\r />][^\t\n\f\r />=]*+"""
    r"""(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+(?:"[^"]*+"|'[^']*+'|[^\t\n\f\r >]++))?)*+"""
    r"(/?)>"
)


class _Formatting:
    """The formatting elements the parser may rebuild (see _FORMATTING): every one
    opened and not yet closed by its own end tag (the parser's list holds no others),
    but for those opened inside a marker (a cell...) that has closed since; their
    cost, at most three alike (same start tag) counted."""

    def __init__(self) -> None:
        #: (markers open, name, start tag as written (or a key of its own), cost, and
        #: the element's place and serial on the stack: see _Stack.is_open)
        self.entries: list[tuple[int, str, str, int, int, int]] = []
        self.alike: Counter[str] = Counter()
        self.cost = 0

    def opened(
        self, markers: int, name: str, tag: str, length: int, place: tuple[int, int]
    ) -> None:
        cost = REBUILD_COST + ATTRIBUTE_COST * length
        self.entries.append((markers, name, tag, cost, *place))
        self.alike[tag] += 1
        if self.alike[tag] <= _ALIKE:
            self.cost += cost

    def _drop(self, index: int) -> None:
        _, _, tag, cost, _, _ = self.entries.pop(index)
        self.alike[tag] -= 1
        if self.alike[tag] < _ALIKE:
            self.cost -= cost

    def _latest(self, name: str, markers: int) -> int | None:
        """Where the last one of the name opened since the last marker (``markers``
        open) is in the list, looked for among the last few (else None: left, an
        over-estimate; behind a marker, the parser does not see it)."""
        for i in range(len(self.entries) - 1, max(len(self.entries) - 16, -1), -1):
            if self.entries[i][0] < markers:
                return None
            if self.entries[i][1] == name:
                return i
        return None

    def closed_already(self, name: str, markers: int, stack: _Stack) -> bool:
        """Its own end tag, for the last one of the name opened since the last marker:
        when another end tag has closed that element, the parser only drops it from
        its list and closes nothing (the innermost one of the name on the stack, an
        outer one, stays open): then dropped here, and True."""
        i = self._latest(name, markers)
        if i is None or stack.is_open(self.entries[i][4], self.entries[i][5]):
            return False
        self._drop(i)
        return True

    def end_tag(self, name: str, markers: int) -> None:
        """Its own end tag: the last one of the name opened since the last marker is
        no longer rebuilt."""
        i = self._latest(name, markers)
        if i is not None:
            self._drop(i)

    def marker_closed(self, markers: int) -> None:
        """A marker closed, ``markers`` still open: what was opened inside it goes."""
        while self.entries and self.entries[-1][0] > markers:
            self._drop(len(self.entries) - 1)


class _Stack:
    """The stack of open elements as the model keeps it, with where each name, each
    special element, each scope boundary and each foreign element and integration
    point is on it (so that no question costs a walk down the stack)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.at: dict[str, list[int]] = {}
        self.special: list[int] = []
        self.scope: list[int] = []
        self.foreign: list[int] = []
        self.integration: list[int] = []
        self.markers = 0
        #: a number of its own for each element pushed, by place on the stack
        self.serials: list[int] = []
        self.pushed = 0

    def push(self, name: str) -> tuple[int, int]:
        """Push ``name``; its place and serial (see :meth:`is_open`)."""
        k = len(self.names)
        self.names.append(name)
        self.pushed += 1
        self.serials.append(self.pushed)
        self.at.setdefault(name, []).append(k)
        if name in _SPECIAL:
            self.special.append(k)
        if name in _SCOPE:
            self.scope.append(k)
        if name in _FOREIGN:
            self.foreign.append(k)
        if name in _INTEGRATION:
            self.integration.append(k)
        if name in _MARKERS:
            self.markers += 1
        return k, self.pushed

    def is_open(self, k: int, serial: int) -> bool:
        """Whether the element pushed at ``k`` with ``serial`` is still open."""
        return k < len(self.serials) and self.serials[k] == serial

    def pop_to(self, k: int) -> bool:
        """Close names[k:]; whether a marker closed."""
        marker = False
        for name in reversed(self.names[k:]):
            self.at[name].pop()
            if name in _MARKERS:
                self.markers -= 1
                marker = True
        del self.names[k:]
        del self.serials[k:]
        for indexes in (self.special, self.scope, self.foreign, self.integration):
            while indexes and indexes[-1] >= k:
                indexes.pop()
        return marker

    def innermost(self, name: str) -> int | None:
        where = self.at.get(name)
        return where[-1] if where else None

    def in_foreign(self) -> bool:
        """Whether the current element is SVG or MathML content (not an integration
        point, where HTML is read again)."""
        return bool(self.foreign) and (
            not self.integration or self.integration[-1] < self.foreign[-1]
        )

    def context_open(self, name: str) -> bool:
        """Whether an item whose context is ``name`` closes its siblings: a table in
        table scope (no template above it), a select in select scope (only option
        groups and options above it), ruby in the default scope."""
        k = self.innermost(name)
        if k is None:
            return False
        if name == "table":
            template = self.innermost("template")
            return template is None or template < k
        if name == "select":
            return all(n in ("optgroup", "option") for n in self.names[k + 1 :][-16:]) and (
                len(self.names) - k - 1 <= 16
            )
        return not (self.scope and self.scope[-1] > k)


def _scan(text: str, lower: str, found: list[re.Match[str]]) -> tuple[int, int]:
    """:func:`_nesting` of the tags ``found`` in ``lower``, read one by one (the work
    is left at 0 once the depth is over the limit); ``text``: the page, where
    attributes are compared as written.
    Where the model cannot tell what the parser does, elements stay open and tags
    count: the estimates only err upwards."""
    stack = _Stack()
    peak = 0
    left = _Formatting()
    rebuilt = searched = 0
    skip = 0  # (the end of the last tag read, or of raw text: no tag before it)
    limit = len(lower)

    def close(k: int) -> None:
        if stack.pop_to(k):
            left.marker_closed(stack.markers)

    def close_p() -> None:
        k = stack.innermost("p")
        if k is not None and not (stack.scope and stack.scope[-1] > k):
            close(k)  # (a p in button scope)

    for m in found:
        if m.start() < skip:
            continue  # (in an attribute value, or raw text)
        name = m[1]
        rest = _TAG_REST.match(lower, m.end())
        if rest is None:
            break  # (the tag never ends: no tag after it)
        tag_end = skip = rest.end()
        rebuilt += left.cost
        depth = len(stack.names)
        searched += depth
        if name[0] == "/":
            name = name[1:]
            if name in _FORMATTING and left.closed_already(name, stack.markers, stack):
                continue  # (<b><p><b></p></b>: the outer <b> stays open)
            k = stack.innermost(name)
            if k is None:
                if name in _FORMATTING:
                    left.end_tag(name, stack.markers)
                continue
            if name in _SPECIAL:
                if stack.scope and stack.scope[-1] > k:
                    continue  # (not in scope: ignored)
            elif stack.special and stack.special[-1] > k:
                if name in _FORMATTING:
                    searched += 8 * depth  # (the adoption agency's passes)
                continue  # (ignored, or what the adoption agency leaves open)
            if name in _FORMATTING:
                left.end_tag(name, stack.markers)
            close(k)
            continue
        foreign = bool(stack.foreign) and name not in _BREAKOUT and stack.in_foreign()
        if foreign:
            # foreign content: every element nests, "/>" closes it at once
            if rest.group(1) == "/":
                continue
        elif name in _NOT_NESTING:
            if name == "hr":
                close_p()
            continue
        elif (
            name in _TABLE_ONLY
            and not stack.context_open("table")
            and stack.innermost("template") is None
        ):
            continue  # (ignored outside a table: no element, and no marker)
        else:
            if name in ("option", "optgroup") and stack.names and stack.names[-1] == "option":
                close(depth - 1)  # (only an option that is the current element)
            if (
                name == "optgroup"
                and stack.names
                and stack.names[-1] == "optgroup"
                and stack.context_open("select")
            ):
                close(len(stack.names) - 1)  # (in a select only: elsewhere they nest)
            elif name in _CLOSES_P:
                close_p()
            item = _ITEMS.get(name)
            if item is not None:
                closes, stops, phrasing_only, reach, context = item
                if context is None or stack.context_open(context):
                    names = stack.names
                    depth = len(names)
                    for k in range(depth - 1, max(depth - 1 - reach, -1), -1):
                        below = names[k]
                        if below in closes:
                            close(k)
                            break
                        if below in stops or (phrasing_only and below not in _PHRASING):
                            break
            if name in _FORMATTING:
                tag = text[m.start() : tag_end]
                place = (len(stack.names), stack.pushed + 1)  # (where the push below puts it)
                left.opened(stack.markers, name, tag, tag_end - m.start(), place)
            if (name in _RAW_TEXT or name == "plaintext") and not stack.foreign:
                # its text is no tags, up to its end tag (plaintext: to the end). (Not
                # under SVG or MathML: whether the parser reads HTML there depends on
                # each element's namespace, which the model does not keep; counting
                # the text's tags only errs upwards.)
                end = _find_tag(lower, "</" + name, tag_end)
                skip = limit if name == "plaintext" or end is None else end
        stack.push(name)
        if len(stack.names) > peak:
            peak = len(stack.names)
            if peak > MAX_NESTING:
                return peak, 0  # (refused: no need to read on)
    return peak, searched + rebuilt


def _find_tag(lower: str, opening: str, at: int = 0) -> int | None:
    """Where the first tag that starts with ``opening`` ("<title", "</script") is in
    ``lower`` from ``at``, its name ended as the tokenizer ends it, or None."""
    found = lower.find(opening, at)
    while found >= 0:
        after = found + len(opening)
        if after >= len(lower) or lower[after] in _NAME_END:
            return found
        found = lower.find(opening, after)
    return None


# ------------------------------------------------------------------------ decoding


#: Python codecs that are not what a browser would read a page with.
_NOT_WEB_ENCODINGS = frozenset(
    {"utf-7", "punycode", "idna", "unicode-escape", "raw-unicode-escape", "undefined"}
)


def decode(raw: bytes) -> str:
    """The text as a browser would most likely read it: BOM, then <meta charset>,
    then UTF-8, then windows-1252 (never failing: undecodable bytes become U+FFFD)."""
    for bom, codec in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if raw.startswith(bom):
            return raw[len(bom) :].decode(codec, "replace")
    declared = _META_CHARSET.search(raw[:4096])
    if declared:
        label = declared.group(1).decode("ascii").lower()
        # As browsers do: latin-1/ascii labels mean windows-1252, utf-16 in a meta
        # (which was read as ASCII) means utf-8.
        if label in ("iso-8859-1", "latin1", "latin-1", "ascii", "us-ascii"):
            label = "cp1252"
        elif label.startswith("utf-16"):
            label = "utf-8"
        try:
            info = codecs.lookup(label)
            # (labels no browser knows, or codecs that are not character encodings,
            # are ignored: the next rules decide)
            if info._is_text_encoding and info.name not in _NOT_WEB_ENCODINGS:  # type: ignore[attr-defined]
                return raw.decode(info.name, "replace")
        except (LookupError, UnicodeError):
            pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


# ------------------------------------------------------------------------ document


def lowered(text: str) -> str:
    """``text`` lowered where it stands: every character one character (U+0130 lowers
    to two) and none lowered into ASCII (the Kelvin sign lowers to "k"; the HTML
    tokenizer folds ASCII letters only). Positions found in it are the text's: a
    language read at a shifted place once put page text, a script, before the CSP."""
    if not text.isascii() and ("\u0130" in text or "\u212a" in text):
        text = text.replace("\u0130", "\u0131").replace("\u212a", "\u00e5")
    return text.lower()


_LANGUAGE = re.compile(r"[A-Za-z0-9-]{1,64}")


def _document(body: str, title: str, lang: str) -> str:
    if not _LANGUAGE.fullmatch(lang):
        lang = ""  # (a language tag, nothing else, is written into the new <html>)
    lang_attr = f' lang="{lang}"' if lang else ""
    title_el = f"<title>{html.escape(title, quote=False)}</title>\n" if title else ""
    return (
        "<!DOCTYPE html>\n"
        f"<html{lang_attr}>\n<head>\n"
        '<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        f"{title_el}</head>\n<body>\n{body.strip()}\n</body>\n</html>\n"
    )


#: (HTML white space only: "\x0b", "\x1c" or U+3000 before the DOCTYPE is text, which
#: puts the page in quirks mode and the CSP meta in the body, where it is ignored)
_HTML_SPACE = "\t\n\f\r "
_DOCTYPE_FIRST = re.compile(f"[{_HTML_SPACE}]*<!DOCTYPE html>[\r\n]")


def _same(raw: bytes, text: str, document: str) -> bool:
    """True when the input already is the rebuilt document (only line endings and
    trailing whitespace may differ: the HTML tokenizer itself normalises those)."""
    if b"\x00" in raw or b"\x1b" in raw:  # NULs, ISO-2022 escapes: never as they are
        return False
    if not _DOCTYPE_FIRST.match(text):  # (cheap, and settles most pages)
        return False
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    norm = text.replace("\r\n", "\n").replace("\r", "\n").strip(_HTML_SPACE)
    return norm == document.strip(_HTML_SPACE)


# ----------------------------------------------------------------------- reporting


# The inventory is a few regular expressions over the source (C speed): parsing the
# page a second time in Python would cost more than nh3 itself. Counts are therefore
# approximate (an entity-encoded "javascript:" is removed but not counted).
# (Applied to the lowered text: HTML tag names are ASCII case-insensitive only.)
#: (An end tag is its name then white space, "/" or ">", as the tokenizer reads it;
#: without one, or without the start tag's ">", the block runs to the end: every
#: match either ends at the first end tag or takes the rest, so the text is read
#: once however many start tags it holds.)
_CODE_BLOCKS = re.compile(
    r"<(script|style)(?=[\s/>]|\Z)(?:[^>]*+>(?:.*?</\1(?=[\s/>])[^>]*+>?|.*)|.*)|<!--.*?(?:-->|\Z)",
    re.S,
)
#: Elements the report does not mention (kept, or rebuilt by this module).
_KEPT = TAGS | STRUCTURE


def _alternatives(names: frozenset[str]) -> str:
    """A regular expression matching exactly ``names``, grouped by first letter (the
    regex engine then skips a group after comparing one character)."""
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        groups.setdefault(name[0], []).append(name[1:])
    # Most frequent first letters of tags first.
    order = "pabdhstluicmeforvgqwkjnxyz"
    branches = []
    for first in sorted(groups, key=lambda c: (order.find(c) % 99, c)):
        rests = [re.escape(rest) for rest in groups[first] if rest]
        optional = "?" if "" in groups[first] else ""
        tails = f"(?:{'|'.join(rests)}){optional}" if rests else ""
        branches.append(re.escape(first) + tails)
    return f"(?:{'|'.join(branches)})"


#: In the LOWERED text: start tags whose name is not in _KEPT (their name), and comment
#: openings ("!--"). A tag's name is all of [a-z0-9-] after "<".
_REPORTED_TAG = re.compile(
    rf"<(?=[a-z!])(?!{_alternatives(_KEPT)}(?![a-z0-9-]))([a-z][a-z0-9-]*|!--)"
)
#: In the lowered text: the ":" of "data:" (giving "data") and of "...ript:" (giving
#: "ript": every "javascript:" and "vbscript:"), tried only at the rare ":".
_SCHEME_COLON = re.compile(r":(?<=(data|ript):)")
# Matched in the REVERSED text ("onclick=" or "srcdoc=" preceded by a space, quote or
# slash, read backwards): the leading literal "=" lets the regex engine skip ahead,
# and the character before the name is then checked by the regex itself, not once
# per match in Python. An event attribute gives "o", a srcdoc attribute "".
_SCRIPT_ATTRIBUTE_REVERSED = re.compile(r"=\s*(?:[a-z]{3,}n(o)|codcrs)(?:[ \t\n\r\f\"'/]|\Z)")
# Script-capable URL schemes are looked for with str.find (rare, and much faster than
# a regular expression tried at every position; see _scheme_positions), then the
# attribute before them.
_URL_ATTRIBUTE_BEFORE = re.compile(
    r"\b(href|src|action|formaction|data|poster|background)\s*=\s*[\"']?\s*\Z"
)
#: Matched (on the lowered text) at each "<meta" (where the tag scan found one).
#: (Matched within one start tag: see _start_tag_end.)
_META_EQUIV = re.compile(r"<meta\b[^>]*\shttp-equiv\s*=\s*[\"']?\s*(?!content-type)")
_HTML_LANG = re.compile(r"<html\b[^>]*?\slang\s*=\s*[\"']?([A-Za-z0-9-]+)")
#: What ends a tag name.
_NAME_END = frozenset("\t\n\f\r />")


def _inventory(
    text: str, lower: str, data_urls: bool = True, script_colon: bool = True
) -> tuple[str, str, Counter[tuple[str, str]]]:
    """The title, the language and (approximately) what the allowlist removes. Only
    for the report and the rebuilt <head>: nh3 alone decides what the output holds.
    ``lower``: ``lowered(text)``; ``data_urls``/``script_colon``: False when "data:" /
    "script:" (any case) is known not to occur in it."""
    found: Counter[tuple[str, str]] = Counter()
    # One scan of the lowered text finds the start tags the allowlist does not keep
    # and the comments, with where they are: code blocks and <meta>s are then only
    # tried there (the only places where their expressions can match).
    places = [(m.start(), m.group(1)) for m in _REPORTED_TAG.finditer(lower)]
    names = Counter(name for _, name in places)
    comments = names.pop("!--", 0)
    metas = [at for at, name in places if name.startswith("meta")]
    blocks = [at for at, name in places if name.startswith(("script", "style", "!"))]
    if comments:
        found[("markup", "comment")] += comments
    for name, n in names.items():
        if name == "meta":
            continue
        if name in SCRIPT_TAGS:
            found[("scripts", f"<{name}>")] += n
        elif name in ACTIVE_TAGS:
            found[("active_content", f"<{name}>")] += n
        else:
            found[("markup", f"<{name}>")] += n
    if names.get("meta"):
        refresh = 0
        done = -1
        for at in metas:  # (each tag read once: a "<meta" inside one is its text)
            if at < done:
                continue
            done = _start_tag_end(lower, at)
            refresh += _META_EQUIV.match(lower, at, done) is not None
        if refresh:
            found[("active_content", "<meta http-equiv>")] += refresh
    # "x.onclick = f" in a script is not markup (the title and the language are read
    # in ``page``, where positions are the text's)
    page = lower
    lower = _strip(lower, blocks)
    # (one scan for event attributes, "o" each, and srcdoc attributes, "")
    attributes = Counter(_SCRIPT_ATTRIBUTE_REVERSED.findall(lower[::-1]))
    if attributes["o"]:
        found[("scripts", "event handler attribute")] += attributes["o"]
    if script_colon or data_urls:
        for at in _scheme_positions(lower, data_urls):
            attribute = _URL_ATTRIBUTE_BEFORE.search(lower, max(0, at - 40), at)
            if attribute and _script_url(lower[at : at + 40]):
                found[("scripts", f"script URL in {attribute.group(1)}")] += 1
    if attributes[""]:
        found[("scripts", "srcdoc attribute")] += attributes[""]
    title = ""
    at = _find_tag(page, "<title")
    if at is not None:
        start = page.find(">", at)
        if start >= 0:  # (RCDATA up to "</title", or to the end)
            end = page.find("</title", start)
            raw = text[start + 1 : end if end >= 0 else len(text)]
            title = " ".join(html.unescape(raw).split())
    lang = ""
    at = _find_tag(page, "<html")
    if at is not None:
        lang_match = _HTML_LANG.match(page, at, _start_tag_end(page, at))
        if lang_match:
            lang = text[lang_match.start(1) : lang_match.end(1)]
    return title, lang, found


def _start_tag_end(lower: str, at: int) -> int:
    """Where the start tag at ``at`` ends (its ">", or the end of the text)."""
    end = lower.find(">", at)
    return end if end >= 0 else len(lower)


def _strip(lower: str, starts: list[int]) -> str:
    """``_CODE_BLOCKS.sub(" ", lower)`` when ``starts`` (in order) holds every place
    where _CODE_BLOCKS can match: each is tried as sub would, left to right, skipping
    those inside a block already replaced."""
    parts = []
    done = 0
    for at in starts:
        if at < done:
            continue
        block = _CODE_BLOCKS.match(lower, at)
        if block:
            parts += (lower[done:at], " ")
            done = block.end()
    if not parts:
        return lower
    parts.append(lower[done:])
    return "".join(parts)


def _scheme_positions(lower: str, data_urls: bool) -> list[int]:
    """Where "javascript:", "vbscript:" (one scan, for "script:") and, with
    ``data_urls``, "data:" start in ``lower``."""
    positions = []
    at = lower.find("script:")
    while at >= 0:
        if at >= 4 and lower.startswith("java", at - 4):
            positions.append(at - 4)
        elif at >= 2 and lower.startswith("vb", at - 2):
            positions.append(at - 2)
        at = lower.find("script:", at + 7)
    if data_urls:
        at = lower.find("data:")
        while at >= 0:
            positions.append(at)
            at = lower.find("data:", at + 5)
    return positions


def _script_url(value: str) -> bool:
    norm = _CONTROL_OR_SPACE.sub("", value).lower()
    if norm.startswith(("javascript:", "vbscript:")):
        return True
    return norm.startswith("data:") and not norm[5:].startswith(SAFE_DATA_IMAGES)


def _actions(found: Counter[tuple[str, str]]) -> list[Action]:
    actions = []
    for group in ("scripts", "active_content", "markup"):
        items = sorted((what, n) for (g, what), n in found.items() if g == group)
        if items:
            detail = ", ".join(f"{n} × {what}" for what, n in items)
            actions.append(Action(group, "removed", detail))
    return actions
