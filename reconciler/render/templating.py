"""Jinja2, and only here: render one vendor template with StrictUndefined."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import jinja2
import markupsafe

from vendors import TEMPLATES


class TemplateError(Exception):
    """A template failed to render; the message names the template and line."""


_DICT_ATTRIBUTES = frozenset(dir(dict))
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&#39;", '"': "&#34;"})


def _output_escape(value: Any) -> Any:
    """What `{{ x }}` writes under autoescape: MarkupSafe's entities, without building a
    Markup object per value (a plain str joins into the output the same)."""
    if value.__class__ is str:
        return value.translate(_ESCAPES)
    if value.__class__ is int:
        return str(value)
    return markupsafe.escape(value)


class _Template(jinja2.Template):
    @classmethod
    def _from_namespace(cls, environment: Any, namespace: Any, globals: Any) -> Any:
        # Compiled templates call `escape` only to write an expression's value (autoescape);
        # should Jinja's internals change, nothing is swapped and output stays the same.
        if namespace.get("escape") is markupsafe.escape:
            namespace["escape"] = _output_escape
        return super()._from_namespace(environment, namespace, globals)


class _Environment(jinja2.Environment):
    """`{{ s.name }}` on a dict, without the AttributeError Jinja raises and catches first
    (a third of the rendering time of a Snom file, whose settings are dicts). The same value:
    a name that is not one of dict's own attributes can only be its key."""

    template_class = _Template

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


@cache
def _environment(autoescape: bool) -> jinja2.Environment:
    return _Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        autoescape=autoescape,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, context: Mapping[str, Any], *, autoescape: bool,
           line_ending: str = "\n") -> str:
    try:
        text = _environment(autoescape).get_template(template).render(context)
    except jinja2.TemplateSyntaxError as exc:
        where = f"templates/{exc.name or template}:{exc.lineno}"
        raise TemplateError(f"{where}: {exc.message}") from exc
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"templates/{template}: template not found") from exc
    except (jinja2.UndefinedError, TypeError, ValueError) as exc:
        raise TemplateError(f"templates/{template}: {exc}") from exc
    if line_ending != "\n":
        text = text.replace("\n", line_ending)
    return text
