"""Layering: phones share the layers below them, and never each other's values."""

from __future__ import annotations

from fleet_fixtures import edit

from reconciler.desired.load import read_source
from reconciler.desired.resolve import Resolver
from reconciler.desired.validate import load_state


def test_a_phones_own_values_do_not_leak_into_its_neighbours(fleet):
    edit(fleet / "devices" / "acme.yaml", "  name: alice-office\n",
         "  name: alice-office\n  params: {sip: {port: 5999}, ntp: {server2: ntp2.acme}}\n")
    resolver = Resolver(load_state(read_source(fleet)))
    office = resolver.resolve("001565aabb02")  # same model, profile and customer as ...
    reception = resolver.resolve("001565aabb01")  # ... this one
    assert office.params["sip"] == {"port": 5999, "transport": "tls",
                                    "server": "acme.pbx.example.net"}
    assert reception.params["sip"]["port"] == 5061
    assert "server2" not in reception.params["ntp"]
    assert office.origins["sip.port"].layer == "device"
    assert reception.origins["sip.port"].layer == "customer"
    # resolving again gives the same answer: nothing shared was changed in place
    assert resolver.resolve("001565aabb01").params == reception.params


def test_a_lines_override_stays_on_that_line(fleet):
    resolver = Resolver(load_state(read_source(fleet)))
    d785 = resolver.resolve("000413aabb04")  # port 1 acme/205 (opus, g722), port 2 acme/201
    by_port = {line.port: line for line in d785.lines}
    assert by_port[1].params["codecs"] == ["opus", "g722"]
    assert by_port[2].params["codecs"] == ["g722", "pcma", "pcmu"]
    assert d785.params["codecs"] == ["g722", "pcma", "pcmu"]


def test_null_and_dash_inherit_from_below(fleet):
    edit(fleet / "customers" / "acme.yaml", "params: {timezone: Europe/Berlin}",
         "params: {timezone: '-', language: null}")
    device = Resolver(load_state(read_source(fleet))).resolve("001565aabb01")
    assert device.params["timezone"] == "Europe/Rome"  # the profile's value
    assert device.origins["timezone"].layer == "profile"
    assert device.params["language"] == "it"
