"""A griffe extension for the API reference: Sphinx roles in docstrings as inline code.

The docstrings use reStructuredText roles (``:func:`find_minima```,
``:class:`~sgdsde.Hyper```); Markdown would print the role name. Each role becomes the
inline code of its target (``~`` keeps the last dotted part, as in Sphinx), linked to the
target's entry in the API reference where it has one, and
double-backtick literals become single-backtick code. Outside code, ``x[i](k)`` (an
indexed call) is not a Markdown link and a lone ``*`` (θ*) is not emphasis: both are
escaped. The docstrings are free-form
text (``docstring_style: null``); their argument lines, ``name: description`` at the
margin with indented continuations, become a Markdown list. Loaded by mkdocs.yml
(``extensions``); the docstrings in the source are left as they are.
"""

from __future__ import annotations

import re
from typing import Callable

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const|ref)?:`(~?)([^`]+)`")
LITERAL = re.compile(r"``([^`]+)``")
NOT_A_LINK = re.compile(r"\]\((?!https?://|[\w./-]+\.md\b)")
CODE_SPAN = re.compile(r"(`[^`]*`)")
LONE_STAR = re.compile(r"(?<!\*)\*(?!\*)")


FIELD = re.compile(r"^([a-z_][\w.]*(?:, ?[A-Za-z_][\w.]*)*(?: \([^()]*\))?): +(?=\S)")


def markdown_fields(lines: list[str]) -> list[str]:
    """Field lines at the margin (``name: text``, ``a, b: text``, ``sigma (d, d): text``;
    a lower-case name: ``Clock: …`` is a paragraph's lead-in, not a field),
    continued by indented lines) as a Markdown list, ``- `name`: text``, set off from
    the paragraphs around it by blank lines."""
    out: list[str] = []
    in_list = False
    for line in lines:
        field = FIELD.match(line)
        if field:
            if out and out[-1].strip() and not in_list:
                out.append("")
            out.append(f"- `{field.group(1)}`: {line[field.end():]}")
            in_list = True
        elif in_list and line and not line[0].isspace():  # back at the margin: the list ends
            out += ["", line]
            in_list = False
        else:
            in_list = in_list and bool(line.strip())
            out.append(line)
    return out


def markdown_code(text: str, resolve: Callable[[str], str | None] = lambda target: None) -> str:
    """``text`` with every Sphinx role and ``literal`` written as Markdown inline code, and
    its field lines as a list. A role whose target ``resolve`` turns into a full path
    becomes an optional cross-reference (a link where the API reference documents that
    path, plain code elsewhere)."""

    def role(match: re.Match) -> str:
        short, target = match.group(1), match.group(2).strip()
        shown = f"`{target.rsplit('.', 1)[-1] if short else target}`"
        path = resolve(target)
        return f'<autoref identifier="{path}" optional>{shown}</autoref>' if path else shown

    lines = LITERAL.sub(r"`\1`", ROLE.sub(role, text)).split("\n")
    lines = [line if line.startswith("    ") else escape_math(line) for line in lines]
    return "\n".join(markdown_fields(lines))


def escape_math(line: str) -> str:
    """Outside code spans, ``a[i](k)`` written ``a[i]\\(k)`` (not a link) and a lone ``*``
    (θ*, n*) written ``\\*`` (not emphasis; ``**bold**`` and a ``* `` bullet stay), so
    Markdown shows them as they are."""
    bullet = re.match(r"\s*\* ", line)
    head, line = (line[: bullet.end()], line[bullet.end():]) if bullet else ("", line)
    parts = CODE_SPAN.split(line)
    return head + "".join(part if part.startswith("`") else LONE_STAR.sub(r"\\*", NOT_A_LINK.sub(r"]\\(", part))
                          for part in parts)


def target_path(obj: griffe.Object, target: str) -> str | None:
    """The full path of a role's target as seen from ``obj``'s scope (its members, imports
    and enclosing scopes), or None."""
    if target.startswith("sgdsde."):
        return target
    head, _, rest = target.partition(".")
    try:
        base = obj.resolve(head)
    except Exception:  # noqa: BLE001 — an unresolvable name is shown as code, unlinked
        return None
    return f"{base}.{rest}" if rest else base


def documented_objects(obj: griffe.Object):
    """``obj`` and every object defined under it (aliases skipped: their targets are visited
    where they are defined)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from documented_objects(member)


class SphinxRoles(griffe.Extension):
    """Rewrites every docstring with :func:`markdown_code` once the package is loaded (so
    that names defined anywhere in it resolve)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        for obj in documented_objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = markdown_code(obj.docstring.value, lambda target: target_path(obj, target))
