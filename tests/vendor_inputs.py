"""The vendor test data (tests/vendor_cases/<vendor>.yaml) turned into RenderInputs and files.

A data file has four parts:

- `vendor`: what is true of the module (models, parameters, firmware scheme, redirect binding);
- `inputs`: the phone every case starts from (MAC, model, provisioning URL, parameters, one
  default line, the pinned firmware);
- `golden`: the phone whose files are kept in tests/golden/<vendor>/;
- `cases`: one phone each, built and rendered, with what a user would notice about its files.

A case (or `golden`) may give: `model`; `lines` (each merged over `inputs.line`; `{}` is the
default line); `params` (replaces the parameters), `with` (merged over them), `without`
(removed); `user_owned`; `raw`; `firmware: pinned`. tests/test_vendor_contract.py says what a
case may expect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

import vendors
from reconciler.render.templating import render
from vendors.base import Build, FirmwareInput, LineInput, RenderInput, Vendor

CASES = Path(__file__).resolve().parent / "vendor_cases"
GOLDEN = Path(__file__).resolve().parent / "golden"


@dataclass(frozen=True)
class VendorData:
    name: str
    vendor: Vendor
    facts: Mapping[str, Any]  # the `vendor` part
    inputs: Mapping[str, Any]
    golden: Mapping[str, Any]
    cases: tuple[Mapping[str, Any], ...]

    def line(self, spec: Mapping[str, Any]) -> LineInput:
        merged = {**self.inputs["line"], **spec}
        extension = str(merged["extension"])
        return LineInput(
            port=int(merged["port"]), account=str(merged["account"]), extension=extension,
            auth_user=str(merged["auth_user"]).format(extension=extension),
            password=str(merged["password"]), display_name=str(merged["display_name"]),
            label=str(merged.get("label", extension)), sip=dict(merged["sip"]),
            params=dict(merged.get("params") or {}))

    def device(self, case: Mapping[str, Any]) -> RenderInput:
        params = dict(case["params"]) if "params" in case else dict(self.inputs["params"])
        params.update(case.get("with") or {})
        for key in case.get("without") or ():
            params.pop(key, None)
        firmware = None
        if case.get("firmware") == "pinned":
            pin = self.inputs["firmware"]
            firmware = FirmwareInput(str(pin["version"]), str(pin["file"]), str(pin["url"]))
        elif case.get("firmware") is not None:
            raise ValueError(f"firmware: {case['firmware']!r} (only 'pinned' is known)")
        return RenderInput(
            mac=str(self.inputs["mac"]), vendor=self.name,
            model=self.vendor.models[str(case.get("model", self.inputs["model"]))],
            name="desk", customer="acme", params=params,
            lines=tuple(self.line(spec or {}) for spec in case.get("lines") or ()),
            user_owned=frozenset(case.get("user_owned") or ()),
            provisioning_url=str(self.inputs["url"]), firmware=firmware,
            raw=dict(case.get("raw") or {}))

    def rendered(self, built: Build) -> dict[str, str]:
        """Every file of the build, rendered as the renderer renders it."""
        return {out.name: render(out.template, out.context, autoescape=self.vendor.autoescape,
                                 line_ending=out.line_ending) for out in built.files}


@cache
def load(name: str) -> VendorData:
    path = CASES / f"{name}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    unknown = set(data) - {"vendor", "inputs", "golden", "cases"}
    if unknown:
        raise ValueError(f"{path}: unknown parts {sorted(unknown)}")
    return VendorData(name, vendors.get(name), data["vendor"], data["inputs"],
                      data.get("golden") or {}, tuple(data.get("cases") or ()))
