from feedsift.models.text import html_to_text, normalise, recurring_lines, strip_furniture, summary, words


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
