"""RenderInput builders shared by the vendor tests: one phone, its lines, its rendered files."""

from __future__ import annotations

from typing import Any

from reconciler.render.templating import render
from vendors.base import FirmwareInput, LineInput, RenderInput, Vendor

URL = "https://prov.example.net/tok123/"


class VendorInputs:
    def __init__(self, vendor: Vendor, mac: str, model: str, common: dict[str, Any],
                 name: str = "desk"):
        self.vendor, self.mac, self.model, self.common, self.name = vendor, mac, model, common, name

    def line(self, port: int = 1, account: str = "acme/201", extension: str = "201",
             password: str = "S3cr&t", display_name: str = "Alice Example",
             sip: dict[str, Any] | None = None, params: dict[str, Any] | None = None
             ) -> LineInput:
        return LineInput(port=port, account=account, extension=extension,
                         auth_user=f"{extension}-auth", password=password,
                         display_name=display_name, label=extension,
                         sip=sip if sip is not None else self.common["sip"],
                         params=params or {})

    def device(self, model: str | None = None, lines: tuple[LineInput, ...] = (),
               params: dict | None = None, user_owned: tuple[str, ...] = (),
               firmware: FirmwareInput | None = None,
               raw: dict[str, Any] | None = None) -> RenderInput:
        return RenderInput(mac=self.mac, vendor=self.vendor.name,
                           model=self.vendor.models[model or self.model], name=self.name,
                           customer="acme", params=self.common if params is None else params,
                           lines=lines, user_owned=frozenset(user_owned), provisioning_url=URL,
                           firmware=firmware, raw=raw or {})

    def rendered(self, dev: RenderInput) -> dict[str, str]:
        """Every file of the phone, rendered; the phone must pass the vendor's check()."""
        assert self.vendor.check(dev) == []
        return {out.name: render(out.template, out.context, autoescape=self.vendor.autoescape,
                                 line_ending=out.line_ending) for out in self.vendor.files(dev)}
