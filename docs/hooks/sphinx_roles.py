"""MkDocs hook: Sphinx roles in the docstrings (``:class:`X```) become links where they can.

The docstrings name other objects the Sphinx way, which mkdocstrings leaves as text
(``:class:<code>X</code>``). This hook drops the role and, for a name that the site
documents, wraps it in a cross-reference that mkdocs-autorefs resolves; a name the site does
not document (``torch.nn.Conv2d``, say) stays plain code, without a warning.
"""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|const):<code>(~?)([\w.]+)</code>")
ANCHOR = re.compile(r'id="((?:stnlab)[\w.]*)"')


def on_page_content(html: str, page, config, files) -> str:
    anchors = ANCHOR.findall(html)

    def link(match: re.Match) -> str:
        short, name = match.group(1) == "~", match.group(2)
        title = name.rsplit(".", 1)[-1] if short else name
        target = name if "." in name else next((a for a in anchors if a.endswith("." + name)), name)
        return f'<autoref identifier="{target}" optional><code>{title}</code></autoref>'

    return ROLE.sub(link, html)
