"""Regular expressions for engines that search a text for one of many words."""

from __future__ import annotations

import re
from collections.abc import Iterable

#: URL schemes that run a script where the URL is opened (browsers, PDF viewers).
SCRIPT_SCHEMES = ("javascript:", "vbscript:", "livescript:", "mocha:")


def trie(words: Iterable[str], first: str = "") -> str:
    """A pattern matching exactly ``words`` (ASCII), branching on one character at a
    time instead of trying every word in turn (``re`` tries the branches of a flat
    alternation one by one at every position); characters of ``first`` are tried
    first, in its order (the most frequent ones: the order of branches does not
    change what matches)."""
    tree: dict[str, dict] = {}
    for word in words:
        node = tree
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}
    rank = {c: i for i, c in enumerate(first)}

    def pattern(node: dict[str, dict]) -> str:
        chars = sorted((c for c in node if c), key=lambda c: (rank.get(c, len(rank)), c))
        branches = [re.escape(c) + pattern(node[c]) for c in chars]
        optional = "" in node
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if optional:
            return "(?:" + body + ")?"
        return body

    return pattern(tree)
