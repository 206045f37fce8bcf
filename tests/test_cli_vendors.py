"""`provctl vendors`: the table comes from the vendor modules, and docs/vendors.md matches it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import vendors
from reconciler.cli import vendors as cli_vendors

DOC = Path(__file__).resolve().parent.parent / "docs" / "vendors.md"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    parser = argparse.ArgumentParser(prog="provctl")
    sub = parser.add_subparsers(dest="command", required=True)
    cli_vendors.add_commands(sub)
    args = parser.parse_args(argv)
    assert cli_vendors.COMMANDS[args.command](args) == 0
    return capsys.readouterr().out


def test_docs_vendors_md_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == cli_vendors.markdown(), (
        "docs/vendors.md is stale: regenerate it with `provctl vendors --markdown > "
        "docs/vendors.md`")


def test_markdown_lists_every_vendor_model_and_line_count(
        capsys: pytest.CaptureFixture[str]) -> None:
    out = run(["vendors", "--markdown"], capsys)
    assert out == cli_vendors.markdown()
    for vendor in vendors.all_vendors():
        assert f"| {vendor.name} |" in out
        for model in vendor.models.values():
            assert f"{model.name} ({model.lines})" in out
    assert "| `line_keys` | yes | yes | yes | yes | yes | yes | - | - |" in out
    assert "## Phones without an account" in out
    for vendor in vendors.all_vendors():
        assert f"- **{vendor.name}**: {vendor.without_account}" in out
        assert f"(vendors/{vendor.name}.md)" in out
        assert (DOC.parent / "vendors" / f"{vendor.name}.md").is_file()


def test_text_table_names_supported_and_missing_parameters(
        capsys: pytest.CaptureFixture[str]) -> None:
    out = run(["vendors"], capsys)
    gigaset = out[out.index("gigaset"):]
    assert "N670 (20)" in gigaset and "N870 (250)" in gigaset
    assert "not expressed: codecs" in gigaset
    assert "redirect service: gigaset-grape" in gigaset
    assert "redirect service: poly-ztp" in out
    assert "note sip: handsets pair by hand" in gigaset
    yealink = out[out.index("yealink"):out.index("snom")]
    assert "note user_owned:" in yealink and "custom.protect stays 0" in yealink
    assert "without an account: common settings only" in yealink
