"""MkDocs hook: docstrings cross-reference with Sphinx roles (:class:`Job`), which Markdown
renders as ":class:" followed by the code; keep the code and drop the role."""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|data|exc|obj|const):(?=<code>)")


def on_page_content(html: str, **kwargs: Any) -> str:
    """Remove the role prefixes from a rendered page."""
    return _ROLE.sub("", html)
