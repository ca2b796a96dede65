"""Compound files ([MS-CFB]) built for the tests: olefile only reads them."""

from __future__ import annotations

import struct

END, FREE, FATSECT, NOSTREAM = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
MSI_CLSID = bytes.fromhex("84100c0000000000c000000000000046")
Tree = dict[str, "bytes | Tree"]


class _Entry:
    def __init__(self, name: str, data: bytes | None, kind: int) -> None:
        self.name, self.data, self.kind = name, data, kind
        self.left = self.right = self.child = NOSTREAM
        self.start, self.size = END, 0
        self.sid = 0


def build(
    tree: Tree, *, shift: int = 9, clsid: bytes = bytes(16), shape: str = "balanced"
) -> bytes:
    """A compound file ([MS-CFB]) holding ``tree`` (a dict is a storage): streams under
    4096 bytes in the mini stream, each storage's children in a red-black tree of the
    given ``shape`` (balanced, right or left: a chain of siblings)."""
    size = 1 << shift
    entries: list[_Entry] = []

    def add(name: str, node: bytes | Tree, kind: int) -> _Entry:
        entry = _Entry(name, node if isinstance(node, bytes) else None, kind)
        entry.sid = len(entries)
        entries.append(entry)
        if isinstance(node, dict):
            kids = [
                add(k, v, 2 if isinstance(v, bytes) else 1)
                for k, v in sorted(node.items(), key=lambda kv: (len(kv[0]), kv[0].upper()))
            ]
            entry.child = link(kids)
        return entry

    def link(kids: list[_Entry]) -> int:
        if not kids:
            return NOSTREAM
        if shape == "right":
            for a, b in zip(kids, kids[1:], strict=False):
                a.right = b.sid
            return kids[0].sid
        if shape == "left":
            for a, b in zip(kids, kids[1:], strict=False):
                b.left = a.sid
            return kids[-1].sid
        middle = len(kids) // 2
        kids[middle].left = link(kids[:middle])
        kids[middle].right = link(kids[middle + 1 :])
        return kids[middle].sid

    root = add("Root Entry", tree, 5)
    mini = bytearray()
    minifat: list[int] = []
    big: list[_Entry] = []
    for entry in entries[1:]:
        if entry.data is None:
            continue
        entry.size = len(entry.data)
        if not entry.data:
            continue
        if len(entry.data) < 4096:
            count = -(-len(entry.data) // 64)
            entry.start = len(mini) // 64
            minifat += [entry.start + i + 1 for i in range(count - 1)] + [END]
            mini += entry.data.ljust(count * 64, b"\x00")
        else:
            big.append(entry)
    per = size // 4
    n_dir = -(-len(entries) * 128 // size)
    n_minifat = -(-len(minifat) * 4 // size)
    n_mini = -(-len(mini) // size)
    n_big = [-(-len(e.data or b"") // size) for e in big]
    n_fat = 1
    while n_fat * per < n_fat + n_dir + n_minifat + n_mini + sum(n_big):
        n_fat += 1
    assert n_fat <= 109
    fat = [FATSECT] * n_fat

    def chain(count: int) -> int:
        if not count:
            return END
        first = len(fat)
        fat.extend([first + i + 1 for i in range(count - 1)] + [END])
        return first

    dir_start, minifat_start, mini_start = chain(n_dir), chain(n_minifat), chain(n_mini)
    for entry, count in zip(big, n_big, strict=True):
        entry.start = chain(count)
    root.start, root.size = (mini_start, len(mini)) if mini else (END, 0)
    fat += [FREE] * (n_fat * per - len(fat))
    body = bytearray(struct.pack(f"<{len(fat)}I", *fat))
    directory = bytearray()
    for entry in entries:
        raw = entry.name.encode("utf-16-le") + b"\x00\x00"
        directory += raw.ljust(64, b"\x00") + struct.pack(
            "<HBBIII16sIQQIQ", len(raw), entry.kind, 1, entry.left, entry.right, entry.child,
            clsid if entry is root else bytes(16), 0, 0, 0, entry.start, entry.size,
        )  # fmt: skip
    unused = bytes(64) + struct.pack("<HBBIII", 0, 0, 0, NOSTREAM, NOSTREAM, NOSTREAM)
    while len(directory) % size:
        directory += unused.ljust(128, b"\x00")
    body += directory
    packed = struct.pack(f"<{len(minifat)}I", *minifat)
    body += packed.ljust(n_minifat * size, b"\xff")
    body += bytes(mini).ljust(n_mini * size, b"\x00")
    for entry, count in zip(big, n_big, strict=True):
        body += (entry.data or b"").ljust(count * size, b"\x00")
    header = (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
        + bytes(16)
        + struct.pack("<HHHHH", 0x3E, 3 if shift == 9 else 4, 0xFFFE, shift, 6)
        + bytes(6)
        + struct.pack(
            "<9I",
            n_dir if shift == 12 else 0,
            n_fat,
            dir_start,
            0,
            4096,
            minifat_start,
            n_minifat,
            END,
            0,
        )
        + struct.pack("<109I", *(list(range(n_fat)) + [FREE] * (109 - n_fat)))
    )
    return header.ljust(size, b"\x00") + bytes(body)


def tree_of(streams: dict[str, bytes]) -> Tree:
    """``{"storage/stream": data}`` as a tree for :func:`build`."""
    root: Tree = {}
    for path, data in streams.items():
        node = root
        *storages, leaf = path.split("/")
        for part in storages:
            child = node.setdefault(part, {})
            assert isinstance(child, dict)
            node = child
        node[leaf] = data
    return root
