"""The faster Jinja environment writes the bytes stock Jinja writes, for every vendor."""

from __future__ import annotations

import functools

import jinja2
import markupsafe
import pytest

import vendors
from reconciler.desired.load import read_source
from reconciler.desired.validate import load_state
from reconciler.render import templating
from reconciler.render.renderer import Renderer


class Html:
    def __html__(self) -> str:
        return "<b>safe</b>"


@pytest.mark.parametrize("value", [
    "plain", "", "a&b<c>d'e\"f", "&amp; already", "ünïcødé ☎", 0, 5060, -1, True, False, None,
    1.5, markupsafe.Markup("<i>x</i>"), Html(), ["a", "<b>"], {"k": "<v>"}])
def test_output_escape_writes_what_markupsafe_writes(value):
    assert str(templating._output_escape(value)) == str(markupsafe.escape(value))


@functools.cache
def stock(autoescape: bool) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(vendors.TEMPLATES)), undefined=jinja2.StrictUndefined,
        autoescape=autoescape, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


def test_every_file_of_the_example_fleet_renders_as_with_stock_jinja(fleet):
    state = load_state(read_source(fleet))
    renderer = Renderer(state)
    compared = set()
    for mac, device in renderer.resolved().items():
        vendor = vendors.get(device.vendor)
        rin = renderer.render_input(device, "local")
        for out in vendor.build(rin).files:
            ours = templating.render(out.template, out.context, autoescape=vendor.autoescape)
            theirs = stock(vendor.autoescape).get_template(out.template).render(out.context)
            assert ours == theirs, f"{mac} {out.name}"
            compared.add(out.template)
    assert len({t.split("/")[0] for t in compared}) >= 8  # every vendor of the example fleet


def test_a_dict_key_named_like_a_dict_method_still_reads_as_jinja_reads_it():
    env = templating._environment(True)
    template = env.from_string("{{ d.name }}|{{ d.items is defined }}|{{ d.get('x') }}")
    context = {"d": {"name": "<n>", "items": "key", "x": "y"}}
    assert template.render(context) == stock(True).from_string(
        "{{ d.name }}|{{ d.items is defined }}|{{ d.get('x') }}").render(context)
