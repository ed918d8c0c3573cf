"""A griffe extension for the API reference: Sphinx roles in docstrings as inline code.

The docstrings use reStructuredText roles (``:func:`find_minima```,
``:class:`~sgdsde.Hyper```); Markdown would print the role name. Each role becomes the
inline code of its target (``~`` keeps the last dotted part, as in Sphinx) and
double-backtick literals become single-backtick code. Outside code, ``x[i](k)`` (an
indexed call) is not a Markdown link: its ``(`` is escaped. Loaded by mkdocs.yml
(``extensions``); the docstrings in the source are left as they are.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const|ref)?:`(~?)([^`]+)`")
LITERAL = re.compile(r"``([^`]+)``")
NOT_A_LINK = re.compile(r"\]\((?!https?://|[\w./-]+\.md\b)")
CODE_SPAN = re.compile(r"(`[^`]*`)")


def markdown_code(text: str) -> str:
    """``text`` with every Sphinx role and ``literal`` written as Markdown inline code."""

    def role(match: re.Match) -> str:
        short, target = match.group(1), match.group(2).strip()
        shown = target.rsplit(".", 1)[-1] if short else target
        return f"`{shown}`"

    lines = LITERAL.sub(r"`\1`", ROLE.sub(role, text)).split("\n")
    return "\n".join(line if line.startswith("    ") else escape_indexed_calls(line) for line in lines)


def escape_indexed_calls(line: str) -> str:
    """``a[i](k)`` outside code spans written ``a[i]\\(k)``, so Markdown shows it as is."""
    parts = CODE_SPAN.split(line)
    return "".join(part if part.startswith("`") else NOT_A_LINK.sub(r"]\\(", part) for part in parts)


class SphinxRoles(griffe.Extension):
    """Rewrites each docstring with :func:`markdown_code` as griffe loads it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_code(obj.docstring.value)
