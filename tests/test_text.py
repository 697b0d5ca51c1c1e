import random
from collections import Counter

from feedsift.models import text
from feedsift.models.text import (
    html_to_text,
    is_footer,
    line_key,
    normalise,
    normalise_lines,
    recurring_lines,
    strip_furniture,
    summary,
    words,
)


def test_html_to_text_keeps_paragraphs_and_drops_scripts():
    html = "<p>First &amp; foremost.</p><script>alert(1)</script><p>Second<br/>line</p><style>p{}</style>"
    assert html_to_text(html) == "First & foremost.\nSecond\nline"


def test_normalise_folds_typography():
    assert normalise("\u201cQuoted\u201d \u2014 it\u2019s\u00a0here\u2026") == '"Quoted" - it\'s here...'


def test_wordpress_footer_and_ellipsis_removed():
    text = "The minister arrived in Astana. [\u2026]\nThe post Minister arrives appeared first on Steppe Herald."
    assert strip_furniture(html_to_text(text)) == "The minister arrived in Astana."


def test_recurring_lines_are_feed_boilerplate():
    texts = [f"Story {i} body.\nFollow Steppe Herald on Telegram!\nDistributed by Wire." for i in range(6)]
    texts.append("Unique story without the furniture.")
    found = recurring_lines(texts)
    assert "follow steppe herald on telegram" in found
    assert all("story" not in line for line in found)
    assert strip_furniture(texts[0], found) == "Story 0 body."


def test_recurring_lines_need_several_articles():
    assert recurring_lines(["a\nb", "a\nc"]) == frozenset()


def test_summary_is_at_most_300_characters_and_cut_at_a_word():
    text = " ".join(["diplomacy"] * 100)
    s = summary(text)
    assert len(s) <= 300 and s.endswith("diplomacy")
    assert summary("short text") == "short text"


def test_words_lowercase_and_keep_hyphenated():
    assert words("Anti-War MPs' vote, 2026!") == ["anti-war", "mps", "vote", "2026"]


# -- shortcuts that must give what the full computation gives -----------------------------------------------------
TRICKY = ["İstanbul", "ß", "STRASSE", "ΣΑΣ", "σας", "K", "ſ", "ǅ", "ﬁ", "²", "_", "'", "-", "’", "—", "a", "B", "9"]


def _tricky_lines(n: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    pieces = TRICKY + [" ", "  ", "\t", ".", "!"]
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) for _ in range(n)]


def test_equal_line_keys_have_equal_word_chars():
    # recurring_lines and strip_furniture key only lines whose word characters match, so this must hold for any line
    lines = _tricky_lines(3000) + ["Don't-stop", "dont stop", "a_b", "İ", "ΣΑΣ.", "x--y", "'quoted'", "\u0130x"]
    for line in lines:
        assert text._word_chars(line_key(line)) == text._word_chars(line.lower()), line
    assert text._word_chars("Ab-c d'e_f, ΣΑΣ") == "Abcde_fΣΑΣ"


def test_recurring_lines_count_keys_not_word_chars():
    # "a b", "ab" and "a-b" share their word characters but are three keys, each in too few articles
    texts = [f"story {i}\n{form}" for i, form in enumerate(["a b", "ab", "a-b"] * 2)]
    assert recurring_lines(texts) == frozenset()
    texts += ["story 9\nA, b!"]
    assert recurring_lines(texts) == frozenset(["a b"])


def test_recurring_lines_match_the_plain_count():
    rng = random.Random(7)
    pool = _tricky_lines(40, seed=11)
    for _ in range(200):
        texts = ["\n".join(rng.choices(pool, k=rng.randint(1, 6))) for _ in range(rng.randint(0, 10))]
        counts = Counter()
        for t in texts:
            counts.update({line_key(line) for line in t.split("\n") if line.strip()})
        floor = max(3, 0.3 * len(texts))
        plain = frozenset(k for k, n in counts.items() if n >= floor and k) if len(texts) >= 3 else frozenset()
        assert recurring_lines(texts) == plain


def test_strip_furniture_drops_lines_by_key_only():
    # "İ" lower-cases to "i" and a combining dot, which is not a word character: the key is "i stanbul bureau"
    boilerplate = frozenset(["follow us", "i stanbul bureau"])
    body = "Story.\nFOLLOW US!\nfollowus\nfollow-us\nİstanbul Bureau\nistanbul bureau"
    assert strip_furniture(body, boilerplate) == "Story.\nfollowus\nfollow-us\nistanbul bureau"


def test_is_footer_matches_each_pattern():
    for line in [
        "The post X appeared first on Y",
        "Like us on Facebook",
        "Subscribe to our newsletter",
        "Continue reading",
        "SHARE THIS story",
    ]:
        assert is_footer(line)
    for line in ["The post office", "Follow the money", "Subscribe", "Read more books today" + "x" * 300, ""]:
        assert not is_footer(line)


def _parsed(markup: str) -> str:
    parser = text._TextExtractor()
    parser.feed(markup)
    parser.close()
    return normalise_lines("".join(parser.parts))


def test_bare_paragraph_markup_reads_as_the_parser_reads_it():
    bodies = [
        "<p>One &amp; two</p><p>three&nbsp;four &#8217;five&#x27;</p>",
        "<p>AT&T&amp</p>x&amp",  # references without ";", at a tag and at the end
        "lede<br>line<br/>line<br />line<br >end &lt;p&gt; &notit; &#0;",
        "<p></p><p>  spaced\t out  </p>\n<p>last &",
        "<p>a</p><P>b</P>",  # upper case: the parser's
        "<p>a</p><p class=x>b</p><b>c</b>",
        "x<b>y</b>z<br>w<p>v</p><script>u</script>",
    ]
    for body in bodies:
        assert html_to_text(body) == _parsed(body), body


def test_normalise_collapses_only_runs_and_odd_spaces():
    assert normalise("a  b\tc\r\nd\x0be\x0cf g") == "a b c \nd e f g"
    assert normalise_lines(" a b \n\n c\t\td ") == "a b\nc d"
