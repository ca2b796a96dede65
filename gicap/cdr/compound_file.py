"""OLE compound files ([MS-CFB]: .doc, .xls, .ppt, .msi...) opened with olefile, in
time linear in their directory.

olefile checks that no two streams start at the same sector by searching a list of
the sectors seen so far, once per stream: a directory of 20,000 small streams (2.5 MB,
a few KB gzip-encoded in transit) took 2 s to open, 100,000 a minute. Detection and
the legacy Office engine open compound files through :class:`CompoundFile`, which
keeps those sectors in a set and raises the same defect.
"""

from __future__ import annotations

import olefile

_NOT_STREAM_STARTS = (olefile.DIFSECT, olefile.FATSECT, olefile.ENDOFCHAIN, olefile.FREESECT)


class CompoundFile(olefile.OleFileIO):  # type: ignore[misc]
    """:class:`olefile.OleFileIO`, with its duplicate-stream check done in a set."""

    def open(self, filename: object, write_mode: bool = False) -> None:
        self._starts_fat: set[int] = set()
        self._starts_mini: set[int] = set()
        super().open(filename, write_mode)

    def _check_duplicate_stream(self, first_sect: int, minifat: bool = False) -> None:
        if minifat:
            seen = self._starts_mini
        elif first_sect in _NOT_STREAM_STARTS:
            return
        else:
            seen = self._starts_fat
        if first_sect in seen:
            self._raise_defect(olefile.DEFECT_INCORRECT, "Stream referenced twice")
        seen.add(first_sect)
