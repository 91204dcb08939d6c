"""Comments' markdown rendered to HTML a page can show as is.

Two steps, each enough on its own for the usual attacks: markdown-it-py (CommonMark) with raw
HTML disabled, so ``<script>`` in a body is text, then nh3 (Ammonia) keeps only a small set of
tags and, on links, only an ``http``/``https`` ``href`` (with ``rel="nofollow noopener
noreferrer"``). Nothing else survives: images shown as their alt text, no attributes but ``href``/``rel``/``title``,
no ``javascript:``/``data:``/relative links, no event handlers. Headings are shifted down two
levels (``#`` → ``<h3>``) so a comment cannot outshout the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml as escape_html
from markdown_it.renderer import RendererProtocol
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

#: the tags a rendered comment may contain
ALLOWED_TAGS = frozenset({
    "p", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li", "a", "h3", "h4", "h5",
    "h6", "br", "hr", "s",
})
#: attributes kept, per tag (``rel`` is set by the sanitiser itself)
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
URL_SCHEMES = frozenset({"http", "https"})
LINK_REL = "nofollow noopener noreferrer"

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_md.enable("strikethrough")


def _image_as_text(self: RendererProtocol, tokens: Sequence[Token], idx: int,
                   options: OptionsDict, env: EnvType) -> str:
    # No images in comments (no tracking pixels, no layout tricks): the alt text stays.
    return escape_html(tokens[idx].content)


_md.add_render_rule("image", _image_as_text)


def _shift_headings(tokens: list[Token]) -> None:
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            level = int(token.tag[1])
            token.tag = f"h{min(6, level + 2)}"


def _attribute(tag: str, name: str, value: str) -> str | None:
    # Belt and braces over url_schemes: relative and scheme-less links are dropped too.
    if name == "href":
        return value if value.lower().startswith(("http://", "https://")) else None
    if name == "start":
        return value if value.isdigit() and len(value) <= 9 else None
    return value


@lru_cache(maxsize=4096)
def render_markdown(body: str) -> str:
    """The sanitised HTML of a comment's markdown ``body`` (safe to insert in a page).

    Deterministic and cached: a page renders each body at read time, the stored body being the
    exact text its author signed.
    """
    tokens = _md.parse(body)
    _shift_headings(tokens)
    html = _md.renderer.render(tokens, _md.options, {})
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=_attribute,
        url_schemes=set(URL_SCHEMES),
        link_rel=LINK_REL,
        strip_comments=True,
    ).strip()
