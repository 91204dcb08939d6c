"""Comments' markdown: what survives the renderer and the sanitiser, and what never does."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from databright.market.markdown import ALLOWED_TAGS, LINK_REL, render_markdown


class _Scan(HTMLParser):
    """Every tag and attribute of an HTML fragment, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((tag, name, value or "") for name, value in attrs)

    handle_startendtag = handle_starttag


def scan(html: str) -> _Scan:
    parser = _Scan()
    parser.feed(html)
    parser.close()
    return parser


def assert_inert(html: str) -> None:
    """Only allowed tags; no event handler; links only http(s), marked nofollow."""
    found = scan(html)
    assert set(found.tags) <= ALLOWED_TAGS, found.tags
    assert "<script" not in html.lower()
    for tag, name, value in found.attrs:
        assert not name.startswith("on"), (tag, name)
        if tag == "a" and name == "href":
            assert ("a", "rel", LINK_REL) in found.attrs, "a link without rel=nofollow"
        assert name in {"href", "rel", "title", "start"}, (tag, name)
        if name == "href":
            assert value.lower().startswith(("http://", "https://")), value


def test_markdown_renders_the_usual_formatting():
    html = render_markdown("# Title\n\n**bold** *it* `x<y`\n\n> quote\n\n- a\n- b\n\n~~old~~")
    assert "<h3>Title</h3>" in html  # headings shifted two levels down
    assert "<strong>bold</strong>" in html and "<em>it</em>" in html
    assert "<code>x&lt;y</code>" in html
    assert "<blockquote>" in html and "<ul>" in html and "<s>old</s>" in html


def test_http_links_survive_with_nofollow():
    html = render_markdown("see [the card](https://example.org/a?b=1&c=2)")
    assert 'href="https://example.org/a?b=1&amp;c=2"' in html
    assert 'rel="nofollow noopener noreferrer"' in html


@pytest.mark.parametrize("hostile", [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](  javascript:alert(1))",
    "[x](data:text/html;base64,PHNjcmlwdD4=)",
    "[x](vbscript:msgbox)",
    "[rel](/relative/path)",
    '"><svg onload=alert(1)>',
    "<a href='javascript:alert(1)'>raw</a>",
    "<iframe src=https://evil.example></iframe>",
    "<div style='position:fixed'>cover</div>",
    "![pixel](https://tracker.example/p.png)",
    "<http://ok.example/?q=\"><script>alert(1)</script>>",
    "[x](https://ok.example/\"onmouseover=\"alert(1))",
    "<!-- <script>alert(1)</script> -->",
    "```html\n<script>alert(1)</script>\n```",
])
def test_hostile_bodies_come_out_inert(hostile):
    html = render_markdown(hostile)
    assert_inert(html)


def test_raw_html_is_shown_as_text_not_dropped():
    # The reader sees what was written: the tags are escaped text, not silently eaten.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in render_markdown("<script>alert(1)</script>")
    assert "&lt;svg onload=alert(1)&gt;" in render_markdown('"><svg onload=alert(1)>')


def test_a_javascript_link_is_not_a_link():
    html = render_markdown("[click](javascript:alert(1))")
    assert "<a" not in html


def test_an_image_keeps_only_its_alt_text():
    html = render_markdown("![a <b> chart](https://example.org/c.png)")
    assert "<img" not in html and "a &lt;b&gt; chart" in html


_PIECES = st.sampled_from([
    "<script>", "</script>", "<img src=x onerror=", "javascript:", "[", "](", ")", "<", ">",
    '"', "'", " onload=", "<a href=", "data:", "`", "```", "\n", "\n\n", "*", "#", "> ", "&",
    "<svg", "http://", "https://x.y/", "![", "<!--", "-->", "\\", "%0a", "&#106;avascript:",
])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_PIECES, st.text(max_size=12)), max_size=30).map("".join))
def test_no_rendered_text_carries_script_handlers_or_javascript_links(body):
    assert_inert(render_markdown(body))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_unicode_renders_inert(body):
    assert_inert(render_markdown(body))


@pytest.mark.parametrize("unsafe", [
    "<script>x</script>", '<a href="javascript:x">a</a>', '<p onclick="x">p</p>',
    '<a href="/rel" rel="nofollow noopener">a</a>', '<img src="https://x/y">',
    '<a href="https://x" >no rel</a>',
])
def test_the_inertness_check_itself_catches_unsafe_html(unsafe):
    # so the property tests above can fail
    with pytest.raises(AssertionError):
        assert_inert(unsafe)
