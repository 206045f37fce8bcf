"""The vendor contract: one suite for every vendor module, driven by tests/vendor_cases/*.yaml.

Each case builds one phone with `VENDOR.build()`, renders its files as the renderer does,
parses every file back with the strict parser of its format (tests/vendor_parsers.py) and
checks what the case expects. A case may expect:

- `problems`: exactly these, in order; each `{starts: text, has: [text, ...]}` (or just the
  text it starts with). Without it, the phone must build with no problem at all;
- `files`: exactly these file names;
- `expect`: `{file: {key: value}}` as the phone reads it (`null`: the key is not written);
- `absent`: `{file: [pattern, ...]}`: no key matches (`*` matches anything);
- `every`: `{file: {pattern: value}}`: some key matches, and every key that does has the value
  (or one of a list of values);
- `keys`: `{file: [key, ...]}`: the file holds exactly these settings;
- `last`: `{file: [key, ...]}`: the file's last settings, in this order;
- `contains` / `lacks` / `starts` / `ends`: `{file: text}` (or a list) on the rendered text.

The checks below the cases hold for every vendor without data: they are the contract a new
vendor module must meet (docs/adding-a-vendor.md).
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from vendor_inputs import CASES, GOLDEN, VendorData, load
from vendor_parsers import view

import vendors
from vendors.base import BootstrapInput, Build

CASE_KEYS = {"name", "issue", "model", "lines", "params", "with", "without", "user_owned", "raw",
             "firmware", "problems", "files", "expect", "absent", "every", "keys", "last",
             "contains", "lacks", "starts", "ends"}
TEMPLATES = Path(vendors.TEMPLATES)


def all_cases() -> list[Any]:
    # only vendors with a data file: the test below fails for a vendor that has none
    return [pytest.param(name, case, id=f"{name}: {case['name']}")
            for name in vendors.KNOWN if (CASES / f"{name}.yaml").is_file()
            for case in load(name).cases]


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(part) for part in text.split("*")) + "$")


def _check_problems(problems: tuple[str, ...], expected: list[Any]) -> None:
    assert len(problems) == len(expected), f"problems: {list(problems)}"
    for got, want in zip(problems, expected, strict=True):
        want = {"starts": want} if isinstance(want, str) else want
        assert got.startswith(want["starts"]), got
        for text in want.get("has") or ():
            assert str(text) in got, (text, got)


def _expected(value: Any) -> str:
    if isinstance(value, bool):
        raise TypeError("write booleans in the data as the text the file holds, e.g. '1'")
    return str(value)


def run(data: VendorData, case: Mapping[str, Any]) -> tuple[Build, dict[str, str]]:
    unknown = set(case) - CASE_KEYS
    assert not unknown, f"unknown keys in case {case['name']!r}: {sorted(unknown)}"
    built = data.vendor.build(data.device(case))
    _check_problems(built.problems, list(case.get("problems") or []))
    files = data.rendered(built)
    if "files" in case:
        assert sorted(files) == sorted(case["files"])
    for kind in ("contains", "lacks", "starts", "ends"):
        for name, texts in (case.get(kind) or {}).items():
            for text in _listed(texts):
                body = files[name]
                ok = {"contains": text in body, "lacks": text not in body,
                      "starts": body.startswith(text), "ends": body.endswith(text)}[kind]
                assert ok, f"{name} {kind} {text!r}"
    if not ({"expect", "absent", "every", "keys", "last"} & set(case)) and case.get("problems"):
        return built, files  # a refused phone is never published: its files need not parse
    parsed = view(data.name, files)
    for name, got in parsed.items():  # provctl writes each key once, and never ambiguously
        assert not got.duplicates, f"{name}: written twice: {got.duplicates}"
        assert not got.unset, f"{name}: self-closing, not surely empty: {got.unset}"
    for name, keys in (case.get("expect") or {}).items():
        got = parsed[name]
        for key, value in keys.items():
            if value is None:
                assert key not in got, f"{name}: {key} = {got.get(key)!r}, expected absent"
            else:
                assert key in got, f"{name}: {key} missing"
                assert got[key] == _expected(value), f"{name}: {key}"
    for name, patterns in (case.get("absent") or {}).items():
        for pattern in _listed(patterns):
            matched = [k for k in parsed.get(name, {}) if _pattern(pattern).match(k)]
            assert not matched, f"{name}: {pattern} matches {matched}"
    for name, patterns in (case.get("every") or {}).items():
        for pattern, value in patterns.items():
            matched = {k: v for k, v in parsed[name].items() if _pattern(pattern).match(k)}
            assert matched, f"{name}: nothing matches {pattern}"
            allowed = {_expected(v) for v in (value if isinstance(value, list) else [value])}
            assert set(matched.values()) <= allowed, f"{name}: {matched}"
    for name, keys in (case.get("keys") or {}).items():
        assert sorted(k for k in parsed[name] if "@" not in k) == sorted(keys), name
    for name, keys in (case.get("last") or {}).items():
        order = [k for k in parsed[name] if "@" not in k and not k.startswith("fkey[")]
        assert order[-len(keys):] == list(keys), order[-len(keys):]
    return built, files


@pytest.mark.parametrize(("name", "case"), all_cases())
def test_case(name: str, case: Mapping[str, Any]) -> None:
    run(load(name), case)


# --- what every vendor module is -------------------------------------------------------------


@pytest.mark.parametrize("name", vendors.KNOWN)
def test_every_vendor_has_a_data_file_and_a_module_shaped_by_the_kit(name: str) -> None:
    module = importlib.import_module(f"vendors.{name}")
    vendor = vendors.get(name)
    assert vendor is module.VENDOR and vendor.name == name
    assert callable(module.parse_user_agent)
    assert (CASES / f"{name}.yaml").is_file()
    assert (TEMPLATES / name).is_dir()
    data = load(name)
    facts = data.facts
    assert vendor.autoescape is facts["autoescape"]
    assert set(facts.get("supported") or ()) <= vendor.supported
    assert not set(facts.get("unsupported") or ()) & vendor.supported
    assert list(vendor.redirect_kinds) == list(facts.get("redirect_kinds") or [])
    assert isinstance(vendor.notes, Mapping)
    assert set(facts.get("notes") or ()) <= set(vendor.notes)


def test_no_data_file_for_a_vendor_that_is_not_known() -> None:
    assert sorted(p.stem for p in CASES.glob("*.yaml")) == sorted(vendors.KNOWN)


@pytest.mark.parametrize("name", vendors.KNOWN)
def test_models_and_line_counts(name: str) -> None:
    expected = load(name).facts["models"]
    models = vendors.get(name).models
    assert list(models) == list(expected)
    for model, spec in expected.items():
        lines, family, keys = ([spec] if isinstance(spec, int) else list(spec)) + [None] * (
            3 - (1 if isinstance(spec, int) else len(spec)))
        assert models[model].name == model and models[model].lines == lines
        if family is not None:
            assert models[model].family == family
        if keys is not None:
            assert models[model].keys == keys


@pytest.mark.parametrize("name", vendors.KNOWN)
def test_firmware_version_scheme(name: str) -> None:
    facts = load(name).facts
    vendor = vendors.get(name)
    for version, parts in facts["versions"].items():
        if parts is None:
            with pytest.raises(ValueError, match=facts["version_error"]):
                vendor.firmware_version(str(version))
        else:
            assert vendor.firmware_version(str(version)) == tuple(parts)
    for older, newer in facts.get("ordered") or ():
        assert vendor.firmware_version(older) < vendor.firmware_version(newer)
    for fit in facts.get("firmware_fits") or ():
        assert vendor.check_firmware(vendor.models[fit["model"]], fit["version"]) is None
    for refused in facts.get("firmware_refused") or ():
        why = vendor.check_firmware(vendor.models[refused["model"]], refused["version"])
        assert why is not None
        for text in refused.get("has") or ():
            assert text in why


@pytest.mark.parametrize("name", vendors.KNOWN)
def test_bootstrap_files_a_factory_phone_asks_for_first(name: str) -> None:
    data = load(name)
    vendor = vendors.get(name)
    for spec in data.facts.get("bootstrap") or ():
        built = Build(tuple(vendor.bootstrap_files(vendor.models[spec["model"]],
                                                   spec["directory"])), ())
        files = data.rendered(built)
        assert sorted(files) == sorted(spec["files"])
        parsed = view(name, files)
        for file, keys in spec["files"].items():
            for key, value in keys.items():
                assert parsed[file].get(key) == _expected(value), (file, key)
        for text in files.values():  # no credentials, nothing of any one phone
            for secret in (data.inputs["line"]["password"], data.inputs["params"].get(
                    "admin_password") or "\0", data.inputs["mac"]):
                assert str(secret) not in text
    if not data.facts.get("bootstrap"):
        assert vendor.bootstrap_files(vendor.models[data.inputs["model"]],
                                      str(data.inputs["url"])) == ()


@pytest.mark.parametrize("name", vendors.KNOWN)
def test_bootstrap_phone_files_send_the_phone_to_its_own_directory(name: str) -> None:
    """docs/zero-touch.md: what one phone gets in its customer's bootstrap directory while it
    onboards. Only the way to its own directory and the clock: nothing of its accounts."""
    data = load(name)
    vendor = vendors.get(name)
    specs = data.facts.get("bootstrap_phone") or ()

    def phone(spec: Mapping[str, Any]) -> BootstrapInput:
        return BootstrapInput(
            mac=str(data.inputs["mac"]), vendor=name,
            model=vendor.models[str(spec.get("model", data.inputs["model"]))],
            provisioning_url=str(data.inputs["url"]),
            bootstrap_url=str(spec.get("directory", "https://prov.example.net/boot123/")),
            ntp_server=spec.get("ntp"))

    for spec in specs:
        files = data.rendered(Build(vendor.bootstrap_phone_files(phone(spec)), ()))
        assert sorted(files) == sorted(spec["files"])
        parsed = view(name, files)
        for file, keys in spec["files"].items():
            for key, value in keys.items():
                want = None if value is None else _expected(value)  # null: not written
                assert parsed[file].get(key) == want, (file, key)
            if spec.get("only"):
                written = {k for k in parsed[file] if "@" not in k or k == "@line1"}
                assert written == {k for k in keys if "@" not in k or k == "@line1"}, file
            assert not parsed[file].duplicates
        for text in files.values():
            for secret in (data.inputs["line"]["password"],
                           data.inputs["params"].get("admin_password") or "\0"):
                assert str(secret) not in text
        assert any(str(data.inputs["url"]) in text or "tok123" in text
                   for text in files.values())
    if not specs:
        assert vendor.bootstrap_phone_files(phone({})) == ()


@pytest.mark.parametrize("name", vendors.KNOWN)
def test_redirect_url(name: str) -> None:
    vendor = vendors.get(name)
    for spec in load(name).facts.get("redirect_url") or ():
        assert vendor.redirect_url(spec["directory"], spec["mac"]) == spec["url"]  # type: ignore[attr-defined]


# --- what every vendor module does, without data ---------------------------------------------


def one_line(data: VendorData, **line: Any) -> dict[str, Any]:
    return {"name": "contract", "lines": [line]}


@pytest.mark.parametrize("name", vendors.KNOWN)
def test_a_phone_with_one_line_builds_once_and_the_same_each_time(name: str) -> None:
    data = load(name)
    device = data.device(one_line(data))
    first, second = data.vendor.build(device), data.vendor.build(device)
    assert first == second and first.problems == ()
    assert isinstance(first.files, tuple) and first.files
    for out in first.files:
        assert out.template.startswith(f"{name}/") and (TEMPLATES / out.template).is_file()
    view(name, data.rendered(first))  # every file parses strictly


@pytest.mark.parametrize("name", vendors.KNOWN)
def test_a_phone_without_an_account_carries_no_credentials_and_no_registrar(name: str) -> None:
    """Issue 15.15: no vendor's common settings name a registrar (see `without_account`)."""
    data = load(name)
    built, files = run(data, {"name": "no account"})
    password = str(data.inputs["line"]["password"])
    registrar = str(data.inputs["params"]["sip"]["server"])
    assert not any(password in text or registrar in text for text in files.values())
    assert registrar in "".join(data.rendered(data.vendor.build(data.device(one_line(data)))
                                              ).values())
    assert len(vendors.get(name).without_account) > 40  # shown by `provctl vendors`


@pytest.mark.parametrize("name", vendors.KNOWN)
def test_a_line_break_is_refused_naming_the_parameter(name: str) -> None:
    data = load(name)
    case = one_line(data, display_name="Alice\nExample")
    _check_problems(data.vendor.build(data.device(case)).problems,
                    [{"starts": "display_name", "has": ["line break"]}])


@pytest.mark.parametrize("name", [n for n in vendors.KNOWN if vendors.get(n).autoescape])
def test_xml_formats_refuse_a_control_character_naming_the_parameter(name: str) -> None:
    data = load(name)
    case = one_line(data, password="pw\x07")
    _check_problems(data.vendor.build(data.device(case)).problems,
                    [{"starts": "password", "has": ["control character"]}])


@pytest.mark.parametrize("name", vendors.KNOWN)
def test_an_unknown_time_zone_is_reported_not_guessed(name: str) -> None:
    data = load(name)
    case = {"name": "mars", "with": {"timezone": "Mars/Olympus"}}
    _check_problems(data.vendor.build(data.device(case)).problems,
                    [{"starts": "timezone:", "has": ["Mars/Olympus"]}])


@pytest.mark.parametrize("name", [n for n in vendors.KNOWN if "language" in
                                  vendors.get(n).supported])
def test_an_unknown_language_is_reported(name: str) -> None:
    data = load(name)
    case = {"name": "klingon", "with": {"language": "tlh"}}
    _check_problems(data.vendor.build(data.device(case)).problems, ["language:"])


@pytest.mark.parametrize("name", vendors.KNOWN)
def test_a_port_the_model_does_not_have_is_refused(name: str) -> None:
    data = load(name)
    model = vendors.get(name).models[data.inputs["model"]]
    case = one_line(data, port=model.lines + 1)
    _check_problems(data.vendor.build(data.device(case)).problems,
                    [{"starts": f"port {model.lines + 1}", "has": [model.name]}])


@pytest.mark.parametrize("name", vendors.KNOWN)
def test_golden_files(name: str) -> None:
    data = load(name)
    built, files = run(data, {"name": "golden", **data.golden})
    folder = GOLDEN / name
    if os.environ.get("PROVCTL_UPDATE_GOLDEN"):
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.iterdir():
            stale.unlink()
        for file, text in files.items():
            (folder / file).write_bytes(text.encode("utf-8"))
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    for file, text in files.items():
        assert (folder / file).read_bytes() == text.encode("utf-8"), file
