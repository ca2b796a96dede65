"""The RTF engine: risky groups removed by an RTF group tokenizer.

The document is split into tokens the way Word reads it: ``{`` and ``}``, control
words (``\\word-123`` and the one space that ends them), control symbols (``\\*``,
``\\{``, ``\\\\``...), ``\\'hh`` hex characters, ``\\binN`` followed by N raw bytes
(which may contain braces), and text. Groups are matched by braces, and each group is
judged by its destination. Removing a group removes its whole byte span; the rest of
the document is written back token for token, unchanged. Runs of text and of control
words that cannot change anything where they are (see ``_quiet``) are jumped over by a
regular expression, in the same token boundaries.

What is removed or neutralised, per switch (see the README for the full list):

* ``embedded_files``: ``\\object`` groups (embedded/linked OLE objects, ``\\objdata``,
  ``\\objclass``, ``\\objupdate``...), replaced by their ``\\result`` (the picture Word
  shows for the object) when they have one; stray ``\\objdata``/``\\objclass`` groups;
  ``\\*\\datastore``; embedded fonts ``\\*\\fontemb``.
* ``dynamic_data_exchange``: ``\\field`` groups whose instruction is DDE, DDEAUTO or
  DATABASE, or whose keyword is computed by a nested field, become their result text;
  ``\\*\\mailmerge`` data sources.
* ``external_hyperlinks``: remote templates ``\\*\\template``; HYPERLINK fields with a
  URL and INCLUDETEXT/INCLUDEPICTURE/INCLUDE/IMPORT/LINK/RD fields become their result;
  shape properties naming a linked picture (``pibName``, ``fillBlipName``) go.
* ``internal_hyperlinks``: HYPERLINK ``\\l`` fields and GOTOBUTTON.
* ``macros``: MACROBUTTON fields.
* ``embedded_images``: ``\\pict`` PNG and JPEG pictures re-encoded; other picture
  formats (EMF, WMF, DIB...) replaced by a blank PNG of the same displayed size.
* ``metadata``: ``\\info`` and ``\\*\\userprops``.
* ``review_comments``: annotations (``\\*\\annotation``, ``\\*\\atnid``, ``\\*\\atrfstart``...),
  and tracked changes accepted (text in ``\\deleted`` runs dropped, revision marks and
  ``\\*\\revtbl``/``\\*\\oldcprops``... removed).
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field

from gicap.cdr.patterns import trie
from gicap.cdr.types import DisarmRequest, DisarmResult
from gicap_office import _images
from gicap_office._fields import AFTER_KEYWORD, BEFORE_KEYWORD, classify_field, keyword_state
from gicap_office._report import Report

_TOKEN = re.compile(
    rb"""
    (?P<open>\{) | (?P<close>\}) |
    \\(?P<word>[a-zA-Z]{1,32})(?P<param>-?[0-9]{1,10})?[ ]? |
    \\'(?P<hex>[0-9a-fA-F]{2})? |
    \\(?P<sym>[\s\S]) |
    (?P<text>[^{}\\]+)
    """,
    re.X,
)

#: Destination words that make their whole group risky wherever they appear in it
#: (Word honours them even when they are not the first word of the group).
RISKY_WORDS = {b"object", b"objdata", b"objclass", b"datastore", b"template"}
#: Review-comment destinations removed with their group.
ANNOTATION_DESTS = {
    b"annotation",
    b"atnid",
    b"atnauthor",
    b"atndate",
    b"atnicn",
    b"atnparent",
    b"atntime",
    b"atnref",
    b"atrfstart",
    b"atrfend",
}
REVISION_DESTS = {b"revtbl", b"oldcprops", b"oldpprops", b"oldsprops", b"oldtprops"}
REVISION_WORDS = {b"revised", b"revauth", b"revdttm", b"revauthdel", b"revdttmdel", b"deleted"}
#: Text-producing control words dropped inside deleted text.
TEXT_WORDS = {b"par", b"line", b"tab", b"page", b"sect", b"cell", b"row", b"u"}
PICT_SIZE_WORDS = {
    b"picw",
    b"pich",
    b"picwgoal",
    b"pichgoal",
    b"picscalex",
    b"picscaley",
    b"piccropl",
    b"piccropr",
    b"piccropt",
    b"piccropb",
}
BLIPS = {b"pngblip": "PNG", b"jpegblip": "JPEG"}

#: Destinations judged by this engine (recognised anywhere in their group).
DESTINATIONS = (
    RISKY_WORDS
    | ANNOTATION_DESTS
    | REVISION_DESTS
    | {
        b"field",
        b"fldinst",
        b"fldrslt",
        b"result",
        b"pict",
        b"info",
        b"userprops",
        b"mailmerge",
        b"fontemb",
    }
)
MAX_DEPTH = 10_000
#: Destinations Word writes in field instructions with text of their own that is no
#: part of them: bookmarks, and a form field's data and names.
_QUIET_IN_INSTRUCTION = frozenset(
    b"""
    bkmkstart bkmkend datafield formfield ffname ffdeftext ffformat ffhelptext
    ffstattext ffentrymcr ffexitmcr ffl
    """.split()
)
#: The destinations of the RTF specification (1.9.1): a group that starts with one of
#: them (or with ``\\*``) holds no text of a field instruction it is in (a bookmark
#: name in ``{\\*\\bkmkstart X}`` is not part of ``DDEAUTO``), for Word and
#: LibreOffice alike.
RTF_DESTINATIONS = frozenset(
    b"""
    aftncn aftnsep aftnsepc annotation atnauthor atndate atnicn atnid atnparent atnref
    atntime atrfend atrfstart author background bkmkend bkmkstart blipuid buptim category
    colorschememapping colortbl comment company creatim datafield datastore defchp defpap
    do doccomm docvar dptxbxtext ebcend ebcstart factoidname falt fchars ffdeftext
    ffentrymcr ffexitmcr ffformat ffhelptext ffl ffname ffstattext field file filetbl
    fldinst fldrslt fldtype fname fontemb fontfile fonttbl footer footerf footerl footerr
    footnote formfield ftncn ftnsep ftnsepc g generator gridtbl header headerf headerl
    headerr hl hlfr hlinkbase hlloc hlsrc hsv htmltag info keycode keywords latentstyles
    lchars levelnumbers leveltext lfolevel linkval list listlevel listname listoverride
    listoverridetable listpicture liststylename listtable listtext lsdlockedexcept macc
    maccPr mailmerge maln malnScr manager margPr mbar mbarPr mbaseJc mbegChr mborderBox
    mborderBoxPr mbox mboxPr mchr mcount mctrlPr md mdeg mdegHide mden mdiff mdPr me
    mendChr meqArr meqArrPr mf mfName mfPr mfunc mfuncPr mgroupChr mgroupChrPr mgrow
    mhideBot mhideLeft mhideRight mhideTop mhtmltag mlim mlimloc mlimlow mlimlowPr mlimupp
    mlimuppPr mm mmaddfieldname mmath mmathPict mmathPr mmaxdist mmc mmcJc mmconnectstr
    mmconnectstrdata mmcPr mmcs mmdatasource mmheadersource mmmailsubject mmodso
    mmodsofilter mmodsofldmpdata mmodsomappedname mmodsoname mmodsorecipdata mmodsosort
    mmodsosrc mmodsotable mmodsoudl mmodsoudldata mmodsouniquetag mmPr mmquery mmr mnary
    mnaryPr mnoBreak mnum mobjDist moMath moMathPara moMathParaPr mopEmu mphant mphantPr
    mplcHide mpos mr mrad mradPr mrPr msepChr mshow mshp msPre msPrePr msSub msSubPr
    msSubSup msSubSupPr msSup msSupPr mstrikeBLTR mstrikeH mstrikeTLBR mstrikeV msub
    msubHide msup msupHide mtransp mtype mvertJc mvfmf mvfml mvtof mvtol mzeroAsc
    mzeroDesc mzeroWid nesttableprops nextfile nonesttables objalias objclass objdata
    object objname objsect objtime oldcprops oldpprops oldsprops oldtprops oleclsid
    operator panose password passwordhash pgp pgptbl picprop pict pn pnseclvl pntext
    pntxta pntxtb printim private propname protend protstart protusertbl pxe result revtbl
    revtim rsidtbl rxe shp shpgrp shpinst shppict shprslt shptxt sn sp staticval
    stylesheet subject sv svb tc template themedata title txe ud upr userprops
    wgrffmtfilter windowcaption writereservation writereservhash xe xform xmlattrname
    xmlattrvalue xmlclose xmlname xmlnstbl xmlopen
    """.split()
)

#: Code page words: a document (\\ansicpgN) or a font (\\cpgN) whose text is read in
#: code page N.
_CODE_PAGE_WORDS = {b"ansicpg", b"cpg"}
#: Control words that can change the tokenizer's state in any group (everything else
#: only matters in a group's first token, in pictures, field instructions and deleted
#: text); ``\\bin`` is here so that its raw bytes are always jumped over, never scanned,
#: and the code page words so that a code page the engine cannot read is refused.
_STATE_WORDS = (
    DESTINATIONS | REVISION_WORDS | _CODE_PAGE_WORDS | {b"uc", b"u", b"plain", b"chatn", b"bin"}
)
#: Code pages in which text in ASCII is not read as ASCII: UTF-7 ("+AEQARABF..." is
#: DDEAUTO to LibreOffice), ISO-2022 and HZ (escape sequences LibreOffice drops before
#: a keyword), UTF-16/32 and EBCDIC. Field instructions are read in the document's
#: code page; in these the engine cannot read them as readers do, and no RTF writer
#: uses them: such a document is refused.
_RECODING_CODE_PAGES = frozenset(
    [65000, 1200, 1201, 12000, 12001, 50220, 50221, 50222, 50225, 50227, 50229, 52936]
    + [37, 500, 870, 875, 1026, 1047, *range(1140, 1150), 20273, 20277, 20278, 20280]
    + [20284, 20285, 20290, 20297, 20420, 20423, 20424, 20833, 20838, 20871, 20880]
    + [20905, 20924, 21025]
)
#: Before a field keyword: blank space, quotes and control characters (what
#: ``keyword_state`` reads as "not begun").
_BEFORE_KEYWORD = re.compile(rb'[\s"\x00-\x1f\x7f]*+')
#: One of ``_STATE_WORDS``, as a whole control word (words longer than 32 letters are
#: cut by ``_TOKEN``, but these are all shorter), as a prefix tree: ``_STOP`` runs at
#: every backslash, and a control word that is none of them fails after a comparison
#: or two. The lookahead makes the word whole: at most one word of the set matches.
_STATE_WORD = rb"(?:" + trie(w.decode("ascii") for w in _STATE_WORDS).encode() + rb")(?![a-zA-Z])"


def _quiet(hex_and_escapes: bool) -> re.Pattern[bytes]:
    """A run of tokens, split exactly as ``_TOKEN`` splits them, that do nothing in a
    "quiet" group: past its first token, not a picture, no field instruction collected,
    not deleted text. There text, ``\\'hh`` and control symbols only feed the field
    instruction (there is none) and control words other than ``_STATE_WORDS`` only
    matter in the cases excluded. ``hex_and_escapes=False`` while characters are still
    to be skipped after ``\\uN``: ``\\'hh`` and the escaped characters count them down,
    so they stop the run."""
    word = rb"\\(?!" + _STATE_WORD + rb")[a-zA-Z]{1,32}(?:-?[0-9]{1,10})?[ ]?"
    if hex_and_escapes:
        others = rb"|\\'[0-9a-fA-F]{2}|\\[^a-zA-Z']"
        return re.compile(rb"(?:[^{}\\]+|" + word + others + rb")*")
    # Skipping: text counts the fallback characters down too, so it stops the run
    # (line breaks are not text and may stay in it).
    others = rb"|\\[^a-zA-Z'\\{}~\-_]"
    return re.compile(rb"(?:[\r\n]+|" + word + others + rb")*")


_QUIET = _quiet(True)
_QUIET_SKIP = _quiet(False)
#: In a quiet group: an escaped backslash or brace, a control word that may matter, or
#: a "\\'" without its two digits (refused by the tokenizer).
_STOP = re.compile(rb"\\(?:(?P<escape>[\\{}])|'(?![0-9a-fA-F]{2})|" + _STATE_WORD + rb")")
_SPECIAL = b"{}\\"
_SPECIAL_BYTES = (b"{", b"}", b"\\")


class RTFRefused(ValueError):
    pass


@dataclass
class _Group:
    start: int
    mark: int  # len(edits) when the group opened
    deleted: bool
    in_dest: bool
    uc: int
    dest: bytes | None = None
    star: bool = False
    first: bool = True
    risky: bytes | None = None
    is_field: bool = False
    buf: list[str] | None = None  # the field instruction this group's text goes to
    own_buf: list[str] | None = None  # set on a \fldinst group
    field_owner: _Group | None = None  # the \field group of a \fldinst
    instr: str = ""
    instr_seen: bool = False
    computed: bool = False
    ambiguous: bool = False  # see _Disarmer._word
    #: \fldrslt or \result: (start, end, mark, itself a field or an instruction)
    result: tuple[int, int, int, bool] | None = None
    # Of the groups around this one (they cannot change while it is open), set when it
    # opens: a closing group is judged without searching the whole stack.
    in_object: bool = False  # an enclosing group is an \object
    in_result: bool = False  # an enclosing group is a \result or \fldrslt
    in_info: bool = False  # an enclosing group is an \info (judged whole)
    instruction: _Group | None = None  # the nearest \fldinst group, this one included
    field_around: _Group | None = None  # the nearest enclosing \field group
    #: (on a \fldinst group) where its keyword stands in the text collected so far
    keyword: int = BEFORE_KEYWORD
    #: The destination (or b"*") that left this group, in a field instruction, out of
    #: it: its text is not the instruction's (see _Disarmer._leave_instruction).
    muted: bytes | None = None
    text: list[bytes] = field(default_factory=list)  # pict: data at this level
    #: The text of a shape property's name (\sn) or value (\sv) group, shared with
    #: the groups in it but destinations ("pib{Name}" is pibName to LibreOffice), and
    #: on the property's \sp group what they held (see _Disarmer._shape_property).
    prop: list[str] | None = None
    prop_name: str = ""
    prop_value: str = ""
    words: list[tuple[bytes, int | None]] = field(default_factory=list)  # pict: words


@dataclass
class _Edit:
    start: int
    end: int
    repl: bytes


@dataclass
class _Edits:
    """The edits of a result, kept as one item of ``_Disarmer.edits`` when its field
    (or object) was replaced by it. Kept one by one, they were searched and copied
    again by every field around (each replaced by its result): fields nested 2,500
    deep with a few edits in each result took 20 s (1 MB, 4 KB gzip-encoded).

    Like every edit, they lie in the result group, and none is empty: ``start`` and
    ``end`` place them all."""

    items: list[_Edit | _Edits]
    start: int  # where the first of them starts
    end: int  # where the last of them ends

    @classmethod
    def of(cls, items: list[_Edit | _Edits]) -> _Edits:
        return cls(items, min(e.start for e in items), max(e.end for e in items))


def _flat(edits: list[_Edit | _Edits]) -> list[_Edit]:
    """Every edit, the kept ones in their place (a loop, not recursion: results nest
    thousands deep)."""
    out: list[_Edit] = []
    todo = [iter(edits)]
    while todo:
        for item in todo[-1]:
            if isinstance(item, _Edits):
                todo.append(iter(item.items))
                break
            out.append(item)
        else:
            todo.pop()
    return out


#: A control word at the end of bytes (with its numeric parameter, if any). Whether
#: its backslash is itself escaped is not asked: a space after text costs nothing,
#: and counting backslashes in a window was fooled (raw \\bin bytes, a long run).
_WORD_AT_END = re.compile(rb"\\[A-Za-z]{1,32}(?:-?[0-9]{1,10})?\Z")
_WORD_GOES_ON = re.compile(rb"[A-Za-z0-9-]")


def _apart(out: list[bytes], following: bytes) -> None:
    """Add a space to ``out`` when it ends with a control word and ``following``
    would go on with it."""
    if not following or not _WORD_GOES_ON.match(following):
        return
    tail = b"".join(out[-8:])[-48:]
    if _WORD_AT_END.search(tail):
        out.append(b" ")


#: The head of a result group: "{\fldrslt", "{\*\fldrslt", "{\result", and a space.
_RESULT_HEAD = re.compile(rb"\{(?:\\\*)?\\(?:fldrslt|result)[ ]?")


class _Disarmer:
    def __init__(self, data: bytes, report: Report) -> None:
        self.data = data
        self.report = report
        self.edits: list[_Edit | _Edits] = []
        self.stack: list[_Group] = []
        self.end_of_document = -1
        self.skip = 0  # characters still to skip after \uN
        self.reencode = _images.Reencoder()
        self.found = [-1, -1, -1]  # see _next

    # ------------------------------------------------------------- tokenising

    def run(self) -> bytes | None:
        data = self.data
        pos = 0
        n = len(data)
        stack = self.stack
        while pos < n:
            if stack:
                g = stack[-1]
                if (
                    not g.first
                    and g.buf is None
                    and g.muted is None
                    and g.prop is None
                    and g.dest != b"pict"
                    and (g.in_dest or not g.deleted)
                ):
                    pos = self._quiet_run(pos)
                    if pos >= n:
                        break
                elif g.dest == b"pict" and data[pos] not in _SPECIAL:
                    # picture data: the text token runs to the next brace or backslash
                    end = self._next_special(pos)
                    self._text(pos, end, data[pos:end])
                    pos = end
                    continue
            m = _TOKEN.match(data, pos)
            if m is None:
                raise RTFRefused(f"unterminated control word at byte {pos}")
            start, pos = pos, m.end()
            # the last group matched tells the token: a control word ends with "word"
            # or "param", and "\\'" without two hex digits matches no group
            kind = m.lastgroup
            if kind == "text":
                self._text(start, pos, m.group("text"))
            elif kind == "word" or kind == "param":
                word = m.group("word")
                param = m.group("param")
                value = int(param) if param is not None else None
                if word == b"bin":
                    length = value or 0
                    if length < 0 or pos + length > n:
                        raise RTFRefused(f"\\bin{length} runs past the end of the file")
                    self._binary(start, pos, pos + length)
                    pos += length
                else:
                    self._word(start, pos, word, value)
            elif kind == "open":
                self._open(start)
            elif kind == "close":
                self._close(start, pos)
                if not self.stack:
                    self.end_of_document = pos
                    break
            elif kind == "sym":
                self._symbol(start, pos, m.group("sym"))
            else:  # "hex", or None for a "\\'" without its two digits
                self._hex(start, pos, m.group("hex"))
        if self.stack:
            raise RTFRefused("unterminated group at the end of the file (truncated RTF)")
        trailing = data[self.end_of_document :]
        if trailing.strip(b" \t\r\n\x00"):
            self.report.structure("data after the end of the document")
            self.edits.append(_Edit(self.end_of_document, len(data), b""))
        if not self.edits:
            return None
        return self._render(0, len(data), 0)

    def _next(self, i: int, pos: int) -> int:
        """Where the next ``{`` (i=0), ``}`` (1) or backslash (2) at or after ``pos`` is
        (``len(data)`` if none). Remembered: ``pos`` only grows, so the document is
        searched once per byte value, whatever the number of calls."""
        at = self.found
        if at[i] < pos:
            found = self.data.find(_SPECIAL_BYTES[i], pos)
            at[i] = found if found >= 0 else len(self.data)
        return at[i]

    def _next_special(self, pos: int) -> int:
        return min(self._next(0, pos), self._next(1, pos), self._next(2, pos))

    def _quiet_run(self, pos: int) -> int:
        """The end of the run of tokens from ``pos`` that change nothing in the current
        (quiet) group: the next real brace, the next control word of ``_STATE_WORDS``
        or, while ``\\uN`` fallback characters are skipped, the next character token.

        Only a control symbol takes a byte that is a brace or a backslash along with its
        own backslash, so ``_STOP`` (which starts at a backslash, and takes ``\\\\``,
        ``\\{`` and ``\\}`` whole) meets every backslash at the start of a token, and a
        brace it does not take is a group delimiter."""
        if self.skip:
            return _QUIET_SKIP.match(self.data, pos).end()
        brace = min(self._next(0, pos), self._next(1, pos))
        while True:
            m = _STOP.search(self.data, pos, brace + 1)
            if m is None:
                if brace < len(self.data):
                    return brace
                # no group left to close: the tokenizer reports what is wrong
                return _QUIET.match(self.data, pos).end()
            if m.lastgroup != "escape":
                return m.start()
            pos = m.end()  # "\\", "\{" or "\}": text, nothing to do
            if pos > brace:
                brace = min(self._next(0, pos), self._next(1, pos))

    def _render(self, start: int, end: int, mark: int) -> bytes:
        """The bytes from ``start`` to ``end`` with the edits made. Where an edit
        leaves a control word right before letters or digits, a space ends the word:
        removed bytes never join two tokens into another ("\\fi", a tracked deletion,
        then "eld" made "\\field", a live DDE field)."""
        out: list[bytes] = []
        pos = start
        for edit in sorted(
            (e for e in _flat(self.edits[mark:]) if e.start >= start and e.end <= end),
            key=lambda e: e.start,
        ):
            if edit.start < pos:
                continue  # inside an edit already applied
            out.append(self.data[pos : edit.start])
            _apart(out, edit.repl)
            out.append(edit.repl)
            pos = edit.end
            _apart(out, self.data[pos : pos + 1])
        out.append(self.data[pos:end])
        return b"".join(out)

    def _replace_group(self, g: _Group, end: int, repl: bytes) -> None:
        del self.edits[g.mark :]
        self.edits.append(_Edit(g.start, end, repl))

    # ----------------------------------------------------------------- events

    def _open(self, start: int) -> None:
        self._brace_ends_skip()
        if len(self.stack) >= MAX_DEPTH:
            raise RTFRefused("groups nested too deeply")
        parent = self.stack[-1] if self.stack else None
        if parent is None:
            self.stack.append(
                _Group(start=start, mark=len(self.edits), deleted=False, in_dest=False, uc=1)
            )
            return
        self.stack.append(
            _Group(
                start=start,
                mark=len(self.edits),
                deleted=parent.deleted,
                in_dest=parent.in_dest,
                uc=parent.uc,
                buf=parent.buf,
                in_object=parent.in_object or b"object" in (parent.dest, parent.risky),
                in_result=parent.in_result or parent.dest in (b"result", b"fldrslt"),
                in_info=parent.in_info or parent.dest == b"info",
                instruction=parent.instruction,
                field_around=parent if parent.is_field else parent.field_around,
                muted=parent.muted,
                prop=parent.prop,
            )
        )

    def _brace_ends_skip(self) -> None:
        """A brace ends the skipping of \\uN fallback characters here. Readers differ
        (one going on across the brace reads other letters), so a field instruction
        with a skip still pending at a brace is ambiguous."""
        if self.skip and self.stack and self.stack[-1].buf is not None:
            self._ambiguous_instruction()
        self.skip = 0

    def _ambiguous_instruction(self) -> None:
        """Which letters of the field instruction being read are skipped as \\uN
        fallbacks is not certain (Word writes the fallback right after \\uN, nothing
        else): the field is treated as risky whatever its keyword."""
        owner = self._fldinst_owner()
        if owner is not None:
            owner.ambiguous = True
        instruction = self.stack[-1].instruction if self.stack else None
        if instruction is not None:
            instruction.ambiguous = True  # (judged by itself when no field holds it)

    def _head(self) -> _Group:
        return self.stack[-1]

    def _word(self, start: int, end: int, word: bytes, value: int | None) -> None:
        g = self._head()
        if word in _CODE_PAGE_WORDS and value in _RECODING_CODE_PAGES:
            raise RTFRefused(
                f"code page {value} (\\{word.decode()}): ASCII text is not ASCII in it, "
                "readers read field instructions differently"
            )
        if self.skip and g.buf is not None:
            # A control word among the fallback characters of \uN in a field
            # instruction: readers disagree on whether it counts as one of them.
            self._ambiguous_instruction()
        if word == b"field" and not g.is_field:
            # (before the group leaves the instruction: a field there may compute it)
            self._nested_field(g)
        if word in RTF_DESTINATIONS:
            self._leave_instruction(g, word)
        if word in DESTINATIONS and g.dest not in DESTINATIONS:
            # like Word (and oletools' rtfobj), a destination word opens its destination
            # wherever it is in the group, not only first
            g.dest = word
            self._destination(g, word)
        elif g.first:
            g.dest = word
            self._destination(g, word)
        if g.first and (word in RTF_DESTINATIONS or word in DESTINATIONS):
            g.prop = None  # (a destination's text is not the property's: a \pict)
        if (
            word in (b"sn", b"sv")
            and g.dest == word
            and g.prop is None
            and len(self.stack) > 1
            and self.stack[-2].dest == b"sp"
        ):
            g.prop = []
        g.first = False
        if word == b"field":
            self._field(g)
        elif word == b"fldinst":
            self._fldinst(g)
        if word in RISKY_WORDS and g.risky is None:
            if len(self.stack) == 1:
                raise RTFRefused(f"\\{word.decode()} at the top level of the document")
            g.risky = word
        if g.dest == b"pict" and len(g.words) < 64:
            g.words.append((word, value))
        if word == b"uc" and value is not None:
            g.uc = max(value, 0)
        elif word == b"u" and value is not None:
            self._char(chr(value + 65536 if value < 0 else value % 0x110000))
            self.skip = g.uc
        elif word == b"plain":
            g.deleted = False
        if word in REVISION_WORDS:
            if word == b"deleted":
                g.deleted = value is None or value != 0
            counted = word in (b"revised", b"deleted") and value != 0
            if self._review("tracked change" if counted else None):
                self.edits.append(_Edit(start, end, b""))
            return
        if word == b"chatn":
            if self._review(None):
                self.edits.append(_Edit(start, end, b""))
            return
        if g.deleted and not g.in_dest and word in TEXT_WORDS:
            self._drop_deleted(start, end)
        elif word in (b"tab", b"line", b"par", b"emspace", b"enspace"):
            self._char(" ")

    def _destination(self, g: _Group, word: bytes) -> None:
        if g.star or word in DESTINATIONS:
            g.in_dest = True

    def _nested_field(self, g: _Group) -> None:
        """``g`` becomes a field: in an instruction whose keyword has not ended (see
        ``keyword_state``), Word puts its result there when it updates the field, so
        it computes the keyword or its end ("DD{QUOTE EAUTO}"). Judged by where the
        keyword stands, not by the nested field's result: one without a result, or an
        empty one, computes it all the same."""
        instruction = g.instruction
        if g.buf is None or instruction is None or instruction.keyword == AFTER_KEYWORD:
            return
        owner = self._fldinst_owner()
        if owner is not None:
            owner.computed = True
        instruction.computed = True

    def _field(self, g: _Group) -> None:
        if g.is_field:
            return
        g.is_field = True
        g.buf = None

    def _fldinst(self, g: _Group) -> None:
        if g.own_buf is not None:
            return
        g.own_buf = []
        g.buf = g.own_buf
        g.instruction = g
        if g.is_field:  # "{\field\fldinst ...}": the instruction in the field's own group
            g.field_owner = g
        else:  # the field around it; a group deeper in a field (readers may still take
            # it as the instruction) too
            g.field_owner = g.field_around

    def _fldinst_owner(self) -> _Group | None:
        g = self.stack[-1].instruction if self.stack else None
        return g.field_owner if g is not None else None

    def _leave_instruction(self, g: _Group, word: bytes) -> None:
        """``g`` reaches a destination ``word`` (or ``\\*``): none of its text from
        there on is part of a field instruction around it, or its own (RTF readers
        skip it, or read it as what it is). Not only at its first token: LibreOffice
        (and Word, for the destinations it knows) takes a destination word, and "\\*"
        with an unknown word, wherever it stands in the group, so "{\\b\\bkmkstart X}"
        holds a bookmark name, not an "X" in front of the keyword. Text in it all the
        same makes the instruction ambiguous (see _muted_text), but in a bookmark or a
        form field's data."""
        if g.buf is not None:
            g.buf = None
            g.muted = word
        elif g.muted == b"*":
            g.muted = word  # (the destination after "\\*")

    def _muted_text(self, g: _Group, text: bytes | str) -> None:
        """Text in a destination left out of a field instruction: readers that do not
        know the destination, or read one of its parts (\\upr's \\ud), may take it
        as the instruction's; the field is then judged ambiguous."""
        if g.muted not in _QUIET_IN_INSTRUCTION and text.strip():
            self._ambiguous_instruction()

    def _symbol(self, start: int, end: int, sym: bytes) -> None:
        g = self._head()
        if sym == b"*":
            self._leave_instruction(g, sym)  # (later in the group too: see there)
            if g.first:
                g.star = True
                g.in_dest = True
                g.prop = None  # (an ignored destination: not the property's text)
                return
        g.first = False
        if sym in (b"\\", b"{", b"}", b"~", b"-", b"_"):
            if g.deleted and not g.in_dest:
                self._drop_deleted(start, end)
                return
            if self.skip:
                self.skip -= 1
                return
            self._char({b"~": " ", b"-": "", b"_": "-"}.get(sym, sym.decode("latin-1")))

    def _hex(self, start: int, end: int, value: bytes | None) -> None:
        if value is None:
            # Word (and oletools' rtfobj) take the next two characters as the digits
            # whatever they are ("\\'a\\\\objdata" is then the word \\objdata), other
            # readers do not: no reading can be trusted.
            raise RTFRefused(f"\\' not followed by two hex digits at byte {start}")
        g = self._head()
        g.first = False
        if g.deleted and not g.in_dest:
            self._drop_deleted(start, end)
            return
        if self.skip:
            self.skip -= 1
            return
        byte = bytes([int(value, 16)])
        if g.buf is not None:
            self._code_page_dependent(g, byte)
        self._char(byte.decode("cp1252", "replace"))

    def _text(self, start: int, end: int, text: bytes) -> None:
        g = self._head()
        if text.strip(b"\r\n"):  # line breaks in RTF are not text
            g.first = False
        if g.dest == b"pict":
            g.text.append(text)
        if g.deleted and not g.in_dest:
            self._drop_deleted(start, end)
            return
        if g.prop is not None and len(g.prop) < MAX_PROPERTY_PIECES:
            # (less the fallback characters of a \uN still to skip: "pib\u78?ame" is
            # "pibName" to readers)
            piece = text.replace(b"\r", b"").replace(b"\n", b"")[self.skip :]
            g.prop.append(piece.decode("cp1252", "replace"))
        if g.buf is not None or self.skip:
            chars = text.replace(b"\r", b"").replace(b"\n", b"")
            if self.skip:
                # The fallback of \uN is skipped wherever it is, as Word skips it: a
                # "?" before a field must not eat the first letter of its instruction.
                cut = min(self.skip, len(chars))
                chars = chars[cut:]
                self.skip -= cut
            if g.buf is not None:
                self._code_page_dependent(g, chars)
                self._collect(g, chars.decode("cp1252", "replace"))
        elif g.muted is not None:
            self._muted_text(g, text)

    def _binary(self, start: int, data_start: int, data_end: int) -> None:
        g = self._head()
        if self.skip and g.buf is not None:
            # \binN among the \uN fallbacks of an instruction: the specification counts
            # it as one fallback character, readers may not
            self._ambiguous_instruction()
        g.first = False
        if g.dest == b"pict":
            g.text.append(b"\x00BIN" + self.data[data_start:data_end])
        if g.deleted and not g.in_dest:
            self._drop_deleted(start, data_end)

    def _char(self, ch: str) -> None:
        g = self._head()
        if g.prop is not None and len(g.prop) < MAX_PROPERTY_PIECES:
            g.prop.append(ch)
        if g.buf is not None:
            self._collect(g, ch)
        elif g.muted is not None:
            self._muted_text(g, ch)

    def _code_page_dependent(self, g: _Group, raw: bytes) -> None:
        """``raw`` bytes of an instruction ``g`` collects for: a byte over 0x7f before
        its keyword makes it ambiguous. Its character depends on the code page (the
        document's, or the font's): a blank one in many (0xff in code page 437, 0x9a
        in KOI8-R, and a double-byte space, 0x81 0x40 in Shift-JIS, takes an ASCII
        byte along), and readers skip blank space before a keyword; the engine reads
        it in code page 1252, where it is none."""
        instruction = g.instruction
        if instruction is None or instruction.keyword != BEFORE_KEYWORD:
            return
        m = _BEFORE_KEYWORD.match(raw)
        if m is not None and m.end() < len(raw) and raw[m.end()] > 0x7F:
            self._ambiguous_instruction()

    @staticmethod
    def _collect(g: _Group, text: str) -> None:
        """Add ``text`` to the field instruction ``g`` collects for."""
        assert g.buf is not None
        g.buf.append(text)
        instruction = g.instruction
        if instruction is not None and instruction.keyword != AFTER_KEYWORD:
            instruction.keyword = keyword_state(instruction.keyword, text)

    def _drop_deleted(self, start: int, end: int) -> None:
        # tracked deletions are accepted: the deleted text goes (counted at \deleted)
        if self.report.policy("review_comments") == "sanitise":
            self.edits.append(_Edit(start, end, b""))

    def _review(self, kind: str | None) -> bool:
        """Judge a review group: counted under ``kind``, or silently removed along with
        the rest (``kind=None``: author tables and the like)."""
        if kind is not None:
            return self.report.hit("review_comments", kind)
        return self.report.policy("review_comments") == "sanitise"

    # -------------------------------------------------------------- closing

    def _close(self, start: int, end: int) -> None:
        self._brace_ends_skip()
        if not self.stack:
            raise RTFRefused(f"unbalanced closing brace at byte {start}")
        g = self.stack.pop()
        parent = self.stack[-1] if self.stack else None
        dest = g.risky or g.dest
        report = self.report
        if g.own_buf is not None and g.field_owner is not None:
            if g.field_owner.instr or g.field_owner.instr_seen:
                g.field_owner.ambiguous = True  # a second instruction: which one counts?
            g.field_owner.instr_seen = True
            g.field_owner.instr = "".join(g.own_buf)
        if g.own_buf is not None and not (g.is_field or parent is g.field_owner):
            # An instruction no \field holds as its own (alone, or in a field's result):
            # LibreOffice makes it a field all the same, and msodde reads it. Judged by
            # itself, and removed when risky (it was kept, and carried out of the result
            # of a field replaced by it).
            verdict = (
                ("dynamic_data_exchange", "field instruction readers may read differently")
                if g.ambiguous
                else classify_field("".join(g.own_buf), g.computed)
            )
            if verdict and report.hit(*verdict, verb="neutralised"):
                self._replace_group(g, end, b"")
        if g.prop is not None and parent is not None and parent.prop is not g.prop:
            # (the \sn or \sv group itself: the groups in it added to its text)
            if g.dest == b"sn":
                parent.prop_name = "".join(g.prop)
            else:
                parent.prop_value = "".join(g.prop)
        if dest in (b"fldrslt", b"result") and parent is not None:
            # (whether the result group is itself a field or an instruction: then
            # nothing of it can stand as plain text)
            parent.result = (g.start, end, g.mark, g.is_field or g.own_buf is not None)
        if dest == b"object":
            if report.hit("embedded_files", "embedded OLE object"):
                self._replace_with_result(g, end)
        elif dest in (b"objdata", b"objclass"):
            if g.in_object and not g.in_result:
                pass  # judged with the \object group around it (a result it keeps is not)
            elif report.hit("embedded_files", "OLE object data"):
                self._replace_group(g, end, b"")
        elif dest == b"datastore":
            if report.hit("embedded_files", "datastore"):
                self._replace_group(g, end, b"")
        elif dest == b"fontemb":  # (with or without \*: Word knows the destination)
            if report.hit("embedded_files", "embedded font"):
                self._replace_group(g, end, b"")
        elif dest == b"template":
            if report.hit("external_hyperlinks", "remote template"):
                self._replace_group(g, end, b"")
        elif dest == b"mailmerge":
            if report.hit("dynamic_data_exchange", "mail-merge data source"):
                self._replace_group(g, end, b"")
        elif g.is_field:
            verdict = (
                ("dynamic_data_exchange", "field instruction readers may read differently")
                if g.ambiguous
                else classify_field(g.instr, g.computed)
            )
            if verdict and parent is None and report.policy(verdict[0]) == "sanitise":
                # "{\rtf1\field...}": the field is the document itself (Word always
                # writes a field in its own group); it cannot go without the document
                raise RTFRefused(
                    f"{verdict[1]} at the top level of the document (not in a group of "
                    "its own): it cannot be removed alone"
                )
            if verdict and report.hit(*verdict, verb="neutralised"):
                self._replace_with_result(g, end)
        elif dest == b"info":
            # (the outermost one only: each nested one scanned its text again, 3,000
            # of them around 1 MB took 66 s)
            if not g.in_info and re.sub(rb"[\s{}]|\\info", b"", self.data[g.start : end]):
                if report.hit("metadata", "document information"):
                    self._replace_group(g, end, b"")
        elif dest == b"userprops":
            if report.hit("metadata", "custom properties"):
                self._replace_group(g, end, b"")
        elif dest == b"annotation":
            if self._review("comment"):
                self._replace_group(g, end, b"")
        elif dest in ANNOTATION_DESTS:
            if self._review("comment anchor" if dest == b"atrfstart" else None):
                self._replace_group(g, end, b"")
        elif dest in REVISION_DESTS:
            if self._review(None if dest == b"revtbl" else "formatting change"):
                self._replace_group(g, end, b"")
        elif dest == b"pict":
            self._picture(g, end)
        elif dest == b"sp":
            self._shape_property(g, end)

    def _shape_property(self, g: _Group, end: int) -> None:
        """A shape property (``{\\sp{\\sn name}{\\sv value}}``, in a shape or a
        picture's \\picprop) naming a picture outside the file: a URL or a file Word
        fetches when it shows the shape, as it does for the same property of a .doc
        (see ``legacy._linked_pictures``). The property goes; the shape keeps the
        picture stored in it, if any (its ``pib`` property)."""
        if g.prop_name.strip().lower() in LINKED_PICTURE_PROPERTIES and g.prop_value.strip():
            if self.report.hit("external_hyperlinks", "linked picture (shape property)"):
                self._replace_group(g, end, b"")

    def _replace_with_result(self, g: _Group, end: int) -> None:
        """Replace the group ``g`` (a field, an object) by its result group: "{\fldrslt
        ...}" -> "{...}" keeps its formatting scope. Done with edits around the result,
        which keeps its own (the result is never copied: a field nested thousands deep
        around megabytes copied them again at every level), nor its edits (see
        ``_Edits``).

        The edits made in ``g`` other than the result's lie before or after the result
        group, and an ``_Edits`` wholly in one group: judged by its ``start`` and
        ``end``, it is judged as its edits would be one by one."""
        if g.result is None or g.result[3]:
            self._replace_group(g, end, b"")
            return
        start, result_end, _, _ = g.result
        head = _RESULT_HEAD.match(self.data, start)
        inner = head.end() if head is not None else start
        # (every edit looked at here is then removed, or kept in a new _Edits that is
        # one item: each is looked at once or twice, however deep the fields nest)
        edits = self.edits[g.mark :]
        if any(e.start < inner and e.end > start for e in edits):
            # an edit of the result group's own head (the group replaced already):
            # nothing of it can stand as plain text
            self._replace_group(g, end, b"")
            return
        kept = [e for e in edits if e.start >= inner and e.end <= result_end]
        del self.edits[g.mark :]
        self.edits.append(_Edit(g.start, inner, b"{" if head is not None else b""))
        self._keep(kept)
        self.edits.append(_Edit(result_end, end, b""))

    def _keep(self, kept: list[_Edit | _Edits]) -> None:
        """Keep the edits of a result its field was replaced by, as one item."""
        if kept:  # (one alone is one item already)
            self.edits.append(kept[0] if len(kept) == 1 else _Edits.of(kept))

    def _picture(self, g: _Group, end: int) -> None:
        policy = self.report.policy("embedded_images")
        if policy != "sanitise":
            self.report.hit("embedded_images", "picture")
            return
        words = dict(g.words)
        fmt = next((BLIPS[w] for w, _ in g.words if w in BLIPS), None)
        raw = _picture_bytes(g.text)
        data = self.reencode(raw, fmt) if fmt and raw else None
        if data is None:
            fmt = "PNG"
            data = _images.PLACEHOLDER_PNG
            self.report.hit(
                "embedded_images", "picture replaced by a blank placeholder", "neutralised"
            )
            size = b"\\picw1\\pich1" + _display_size(g.words)
        else:
            self.report.hit("embedded_images", "picture re-encoded", "neutralised")
            size = b"".join(
                b"\\" + w + str(words[w]).encode()
                for w in (b"picw", b"pich")
                if words.get(w) is not None
            )
        keep = b"".join(
            b"\\" + w + str(v).encode()
            for w, v in g.words
            if w in PICT_SIZE_WORDS - {b"picw", b"pich"} and v is not None
        )
        blip = b"\\pngblip" if fmt == "PNG" else b"\\jpegblip"
        lines = binascii.hexlify(data, b"\n", -64)  # lines of 128 digits
        self._replace_group(g, end, b"{\\pict" + size + keep + blip + b"\n" + lines + b"}")


_METAFILES = {b"emfblip", b"wmetafile", b"pmmetafile", b"macpict"}
#: Shape properties that name a picture by a URL or a file path ([MS-ODRAW] pibName,
#: fillBlipName; in RTF by name, any letter case).
LINKED_PICTURE_PROPERTIES = {"pibname", "fillblipname"}
#: Pieces of text kept of one shape property's name or value (a value is a few
#: pieces: a URL, its escaped characters).
MAX_PROPERTY_PIECES = 4096


def _display_size(words: list[tuple[bytes, int | None]]) -> bytes:
    """``\\picwgoal``/``\\pichgoal`` (twips) for a placeholder when the picture only
    gave its own size: pixels for bitmaps, 0.01 mm for metafiles."""
    found = dict(words)
    if found.get(b"picwgoal") is not None or found.get(b"picw") is None:
        return b""
    metafile = any(w in _METAFILES for w, _ in words)
    out = b""
    for src, goal in ((b"picw", b"picwgoal"), (b"pich", b"pichgoal")):
        value = found.get(src) or 0
        twips = value * 1440 // 2540 if metafile else value * 15
        out += b"\\" + goal + str(twips).encode()
    return out


#: Every byte that is not a hex digit (deleted from picture data before decoding it).
_NOT_HEX = bytes(b for b in range(256) if b not in b"0123456789abcdefABCDEF")


def _picture_bytes(parts: list[bytes]) -> bytes:
    binary = [p[4:] for p in parts if p.startswith(b"\x00BIN")]
    if binary:
        return b"".join(binary)
    text = b"".join(parts)
    try:
        # data without line breaks or spaces decodes as it is (translate would keep it
        # all); anything else fails here and is cleaned first
        return binascii.unhexlify(text)
    except binascii.Error:
        pass
    text = text.translate(None, _NOT_HEX)
    if len(text) % 2:
        text = text[:-1]
    try:
        return binascii.unhexlify(text)
    except binascii.Error:
        return b""


#: A control word of more than 32 letters, or a number of more than 10 digits: Word
#: and oletools read them whole, the tokenizer would cut them (a "\\bin00000000007"
#: read as \\bin0 and text hides what the real \\bin7 would show).
#: The letters are taken possessively (never given back: a letter would then come
#: next, which the digits cannot match), so a match starts where the two-branch form
#: ``\\[a-zA-Z]{33}|\\[a-zA-Z]{1,32}-?[0-9]{11}`` finds one, without backtracking
#: at every control word of the text.
_OVERLONG = re.compile(rb"\\[a-zA-Z]{1,32}+(?:[a-zA-Z]|-?[0-9]{11})")


def disarm(request: DisarmRequest) -> DisarmResult:
    data = request.source.read_bytes()
    if not data.startswith(b"{\\rt"):
        return DisarmResult("unprocessable", reason="not an RTF document")
    overlong = _OVERLONG.search(data)
    if overlong is not None:
        return DisarmResult(
            "unprocessable",
            reason="malformed RTF: a control word over 32 letters or a number over 10 digits "
            f"at byte {overlong.start()} (readers split it differently)",
        )
    report = Report(request.switches)
    try:
        out = _Disarmer(data, report).run()
    except RTFRefused as exc:
        return DisarmResult("unprocessable", reason=f"malformed RTF: {exc}")
    except _images.ImageBomb as exc:
        return DisarmResult("unprocessable", reason=f"image bomb: {exc}")
    blocked = report.blocked()
    if blocked is not None:
        return blocked
    if out is None or not report.changes:
        return report.unmodified()
    request.destination.write_bytes(out)
    return report.rebuilt()
