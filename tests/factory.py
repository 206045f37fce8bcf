"""Factory-fresh phones behind DHCP (docs/zero-touch.md): the DHCP option names the customer's
bootstrap URL; the phone fetches what its factory firmware asks for there and follows the keys
it finds, as the vendor's sources say it does (vendors/<vendor>/, docs/vendors/), until it
reaches its own file. Built on the phone simulator (tests/phones.py): its User-Agent, its own
client address, the requests it made (`got`).

The fleet's base URL names a host the phones resolve to the test server (`hosts`), as DNS would.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from phones import Phone


@dataclass
class Factory:
    phone: Phone
    hosts: dict[str, str] = field(default_factory=dict)  # "localhost:8080" -> "127.0.0.1:PORT"
    settings: dict[str, str] = field(default_factory=dict)  # what the phone has applied

    def fetch(self, url: str) -> tuple[int, bytes]:
        """GET an absolute URL (host mapped), recorded by the phone simulator."""
        parts = urlsplit(url)
        host = self.hosts.get(parts.netloc, parts.netloc)
        directory, _, name = parts.path.rpartition("/")
        return self.phone.get(f"{parts.scheme}://{host}{directory}/", name)

    def boot(self, dhcp_url: str) -> list[tuple[str, int]]:
        """One boot: from the DHCP option's URL as far as the phone gets."""
        self.phone.got = []
        getattr(self, f"_{self.phone.vendor}")(dhcp_url)
        return self.phone.got

    # --- per vendor --------------------------------------------------------------------------

    def _cisco(self, dhcp_url: str) -> None:
        """Profile rules A, B, C, D in order in one resync; a rule an earlier file of the same
        resync changed is read as changed [I, as docs/vendors/cisco.md says]; the factory rule is
        /$PSN.xml against the DHCP server [V]."""
        psn = self.phone.model.removeprefix("CP-")
        rules = {"Profile_Rule": "/$PSN.xml"}
        for rule in ("Profile_Rule", "Profile_Rule_B", "Profile_Rule_C", "Profile_Rule_D"):
            value = self.settings.get(rule, rules.get(rule, ""))
            if not value:
                continue
            value = value.replace("$MA", self.phone.mac).replace("$PSN", psn)
            url = value if "://" in value else dhcp_url.rstrip("/") + value
            status, body = self.fetch(url)
            if status == 200:
                root = ET.fromstring(body)
                self.settings.update({e.tag: e.text or "" for e in root})

    def _grandstream(self, dhcp_url: str) -> None:
        """cfg<mac>, cfg<mac>.xml, ... from the DHCP URL [V]; P237/P212 from it; P145 needs a
        reboot, after which the phone asks its config server path [I]."""
        server = dhcp_url
        for _ in range(2):
            for name in (f"cfg{self.phone.mac}", f"cfg{self.phone.mac}.xml"):
                status, body = self.fetch(server.rstrip("/") + "/" + name)
                if status == 200:
                    config = ET.fromstring(body).find("config")
                    assert config is not None
                    self.settings.update({e.tag: e.text or "" for e in config})
                    break
            else:
                return
            scheme = {"1": "http", "2": "https"}[self.settings["P212"]]
            if self.settings.get("P145") != "0":
                return  # DHCP would override the server again: nowhere else to go
            following = f"{scheme}://{self.settings['P237']}/"
            if following == server:
                return
            server = following

    def _fanvil(self, dhcp_url: str) -> None:
        """<mac>.cfg from the DHCP URL [V]; the Flash keys name where to fetch next."""
        url = dhcp_url.rstrip("/") + f"/{self.phone.mac}.cfg"
        for _ in range(2):
            status, body = self.fetch(url)
            if status != 200:
                return
            self.settings.update(dict(re.findall(r"^([A-Za-z][^:\n]*?)\s*:(.*)$",
                                                 body.decode(), re.M)))
            scheme = {"4": "http", "5": "https"}[self.settings["Flash Protocol"]]
            following = (f"{scheme}://{self.settings['Flash Server IP']}/"
                         f"{self.settings['Flash File Name']}")
            if following == url or self.settings.get("DHCP Option") != "0":
                return
            url = following

    def _yealink(self, dhcp_url: str) -> None:
        """The common boot file, then <mac>.boot; its include:config lines top to bottom, by a
        name next to the boot file or by URL [V]; without boot files the legacy order."""
        base = dhcp_url.rstrip("/") + "/"
        self.fetch(base + "y000000000000.boot")
        status, body = self.fetch(base + f"{self.phone.mac}.boot")
        if status != 200:
            self.fetch(base + "y000000000000.cfg")
            names = [f"{self.phone.mac}.cfg"]
        else:
            names = re.findall(r'^include:config "([^"]+)"', body.decode(), re.M)
        for name in names:
            status, body = self.fetch(name if "://" in name else base + name)
            if status == 200:
                self.settings.update(dict(re.findall(r"^([A-Za-z0-9_.\[\]-]+) = (.*)$",
                                                     body.decode(), re.M)))

    def _snom(self, dhcp_url: str) -> None:
        """The DHCP value is a file URL with {mac} in it, replaced by the MAC [V]; then
        setting_server, polled a minute later (at once here) [V tancredi]."""
        url = dhcp_url.replace("{mac}", self.phone.mac.upper())
        for _ in range(2):
            status, body = self.fetch(url)
            if status != 200:
                return
            settings = ET.fromstring(body).find("phone-settings")
            assert settings is not None
            self.settings.update({e.tag: e.text or "" for e in settings})
            if self.settings.get("setting_server", url) == url:
                return
            url = self.settings["setting_server"]

    def _panasonic(self, dhcp_url: str) -> None:
        """{MODEL}.cfg from a DHCP URL ending in "/" [V], then the standard file it names; the
        standard file's new path is read at the next download [I] (10 minutes later: at once
        here)."""
        status, body = self.fetch(dhcp_url.rstrip("/") + f"/{self.phone.model}.cfg")
        if status != 200:
            return
        path = self._panasonic_apply(body)
        for _ in range(2):
            url = path.replace("{MAC}", self.phone.mac.upper()).replace("{mac}", self.phone.mac)
            status, body = self.fetch(url)
            if status != 200:
                return
            following = self._panasonic_apply(body)
            if following == path:
                return
            path = following

    def _panasonic_apply(self, body: bytes) -> str:
        self.settings.update(dict(re.findall(r'^([A-Z0-9_]+)="([^"]*)"\r$', body.decode(), re.M)))
        return self.settings["CFG_STANDARD_FILE_PATH"]
