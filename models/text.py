"""Text cleaning shared by the topic model and the duplicate detector.

Feeds carry HTML, typographic punctuation and publisher furniture (footers,
"follow us" lines). Both consumers want the story, so cleaning happens once,
here, as pure functions.
"""

from __future__ import annotations

import html
import re
import string
import unicodedata
from collections import Counter
from functools import lru_cache
from html.parser import HTMLParser

_BLOCK_TAGS = frozenset(
    [
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "pre",
        "table",
        "tr",
        "td",
        "th",
        "section",
        "article",
        "header",
        "footer",
        "figure",
        "figcaption",
        "hr",
    ]
)
_SKIP_TAGS = frozenset(("script", "style", "noscript", "template", "iframe", "object"))

_TRANSLATE = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2015": "-",
        "\u2212": "-",
        "\u2026": "...",
        "\u00a0": " ",
        "\u200b": "",
        "\ufeff": "",
    }
)

# Furniture that publishers append to every item; matched per line, case-blind, as one pattern.
_FOOTER_PATTERNS = [
    r"^the post .{1,400} appeared first on .{1,200}$",
    r"^(follow|like) us on .{0,200}$",
    r"^(sign up|subscribe)\b.{0,80}\bnewsletter\b.{0,200}$",
    r"^(read more|continue reading)\b.{0,200}$",
    r"^(share this|share on)\b.{0,120}$",
]
_FOOTER = re.compile("|".join(f"(?:{p})" for p in _FOOTER_PATTERNS), re.I)
_TRAILING_ELLIPSIS = re.compile(r"\s*(\[(\.\.\.|&hellip;|…)\]|\.\.\.|…)\s*$")
# Matching only the characters to fold and replacing them one by one is several times faster
# than `str.translate` on long texts, where they are rare.
_FOLD = re.compile("[" + "".join(re.escape(chr(c)) for c in _TRANSLATE) + "]")
# A run of spaces and tabs becomes one space; a lone space, the common case, is not matched (replacing every
# space between two words by itself took most of the cleaning's time).
_SPACES = re.compile(r"[ \t\r\f\v]{2,}|[\t\r\f\v]")
_WORD = re.compile(r"\w+(?:['-]\w+)*", re.UNICODE)
_NON_WORD = re.compile(r"\W+")
#: The ASCII characters `\W` matches, deleted by `bytes.translate` many times faster than by `_NON_WORD`.
_ASCII_NON_WORD = bytes(c for c in range(128) if chr(c) not in string.ascii_letters + string.digits + "_")
#: Tags that `_TextExtractor` reads as bare line breaks, and the start of any other markup.
_BARE_BREAK = re.compile(r"</?p>|<br ?/?>")
_OTHER_TAG = re.compile(r"<(?!/?p>|br ?/?>)")


class _TextExtractor(HTMLParser):
    """Collects visible text; block elements become line breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Visible text of an HTML fragment, one paragraph per line.

    A body whose only tags are `<p>`, `</p>` and `<br>` spelt so (no attributes, lower case) skips the parser: it
    would turn each of them into a line break and unescape the text between them, and unescaping the whole text
    at once is the same, as no character reference spans a line break.
    """
    if "<" not in markup and "&" not in markup:
        return normalise_lines(markup)
    if not _OTHER_TAG.search(markup):
        return normalise_lines(html.unescape(_BARE_BREAK.sub("\n", markup)))
    parser = _TextExtractor()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:  # HTMLParser is lenient; this is a last resort
        return normalise_lines(html.unescape(re.sub(r"<[^>]*>", " ", markup)))
    return normalise_lines("".join(parser.parts))


def _fold(text: str) -> str:
    """Unicode compatibility forms, quotes and dashes folded (ASCII text has none of them)."""
    if text.isascii():
        return text
    return _FOLD.sub(lambda m: _TRANSLATE[ord(m.group())], unicodedata.normalize("NFKC", text))


def _collapse_spaces(text: str) -> str:
    """`_SPACES` replaced by one space. Most texts have nothing it matches (every match starts with one of these
    five), which `in` finds many times faster than its search."""
    if "  " in text or "\t" in text or "\r" in text or "\f" in text or "\v" in text:
        return _SPACES.sub(" ", text)
    return text


def normalise(text: str) -> str:
    """Unicode, quotes, dashes and spaces folded so that copies compare equal."""
    return _collapse_spaces(_fold(text)).strip()


def normalise_lines(text: str) -> str:
    """`normalise` of each line, empty lines dropped; folded in one pass over the whole text (no fold joins
    or makes a line break)."""
    lines = _collapse_spaces(_fold(text)).split("\n")
    return "\n".join(kept for line in lines if (kept := line.strip()))


def is_footer(line: str) -> bool:
    return _FOOTER.match(line) is not None


def strip_furniture(text: str, boilerplate: frozenset[str] = frozenset()) -> str:
    """Drops known footers, a trailing "[...]" and the feed's recurring lines.

    A line is only tokenised for its key when its word characters are those of a boilerplate key (`_word_chars`).
    """
    forms = _key_forms(frozenset(boilerplate)) if boilerplate else ()
    kept = [
        line
        for line in text.split("\n")
        if line
        and not is_footer(line)
        and not (forms and _word_chars(line.lower()) in forms and line_key(line) in boilerplate)
    ]
    out = "\n".join(kept)
    if out.rstrip().endswith(("...", "\u2026", "]")):  # the only endings the pattern takes off; it is slow to scan
        out = _TRAILING_ELLIPSIS.sub("", out)
    return out.strip()


def line_key(line: str) -> str:
    return " ".join(words(line))


def _word_chars(text: str) -> str:
    """`text` less its non-word characters.

    `line_key` joins with spaces the `_WORD` matches of `line.lower()`, which hold all its word characters in
    order (a match starts at every word character outside one and ends before a non-word character) and else
    only apostrophes and hyphens. So `_word_chars(line_key(line)) == _word_chars(line.lower())`: lines with equal
    keys have equal word characters, which are many times cheaper to find than the key.
    """
    if text.isascii():
        return text.encode().translate(None, _ASCII_NON_WORD).decode()
    return _NON_WORD.sub("", text)


@lru_cache(maxsize=16)
def _key_forms(keys: frozenset[str]) -> frozenset[str]:
    """The word characters of line keys (a feed's boilerplate is the same set for all its entries)."""
    return frozenset(map(_word_chars, keys))


def recurring_lines(texts: list[str], min_count: int = 3, min_share: float = 0.3) -> frozenset[str]:
    """Lines that recur across many articles of one feed: its boilerplate.

    A line counts once per article; it is boilerplate when it appears in at
    least `min_count` articles and in at least `min_share` of them. Keys are
    word-normalised so punctuation and case changes do not hide a footer.

    Most lines are unique paragraphs, so lines are first counted by their word characters, which equal keys
    share (`_word_chars`); only lines whose word characters recur often enough are tokenised into keys. A line
    without word characters (blank, or punctuation only) has the empty key, which is never boilerplate.
    """
    if len(texts) < min_count:
        return frozenset()
    floor = max(min_count, min_share * len(texts))
    lines = [text.split("\n") for text in texts]
    forms = [[_word_chars(line.lower()) for line in text] for text in lines]
    counts: Counter[str] = Counter()
    for text in forms:
        counts.update(set(text))
    common = {form for form, n in counts.items() if n >= floor and form}
    if not common:
        return frozenset()
    keys: Counter[str] = Counter()
    for text, text_forms in zip(lines, forms):
        keys.update({line_key(line) for line, form in zip(text, text_forms) if form in common})
    return frozenset(key for key, n in keys.items() if n >= floor and key)


def remember_lines(known: list[str], learned, limit: int = 200) -> list[str]:
    """A feed's boilerplate across polls: what it had, then lines newly learned; the newest `limit` kept."""
    merged = list(known) + sorted(k for k in set(learned) if k and k not in set(known))
    return merged[-limit:]


def words(text: str) -> list[str]:
    """Lower-cased word tokens; the unit of shingles."""
    return _WORD.findall(text.lower())


def summary(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    space = cut.rfind(" ")
    return cut[: space if space > limit * 0.6 else limit].rstrip()
