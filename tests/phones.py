"""A phone simulator: a phone of a given vendor boots and fetches, over real HTTP, the files its
factory firmware asks for, in the order it asks, with its vendor's User-Agent.

Request orders follow /work/shared/reference/vendor-formats.md ("Files the phone requests");
User-Agents follow the samples in tests/test_vendor_useragent.py. Each phone can come from its
own loopback address (127.0.0.0/8 is all local), so a scanner and the phones are told apart.
"""

from __future__ import annotations

import http.client
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Phone:
    vendor: str
    mac: str  # 12 lowercase hex digits
    model: str  # provctl's model name: T46U, D785, VVX450, GXP2140 ...
    firmware: str
    ip: str = "127.0.0.1"  # the source address it connects from
    got: list[tuple[str, int]] = field(default_factory=list)  # (path, status) in order

    @property
    def user_agent(self) -> str:
        mac, up = self.mac, self.mac.upper()
        colons = ":".join(mac[i:i + 2] for i in range(0, 12, 2))
        return {
            "yealink": f"Yealink SIP-{self.model} {self.firmware} {colons}",
            "snom": f"Mozilla/4.0 (compatible; snom{self.model}-SIP {self.firmware} "
                    f"2010.12-00004-g9ba52f5 {up} SXM:0 UXM:0)",
            "poly": "FileTransport PolycomVVX-" + re.sub(r"^VVX", "VVX_", self.model)
                    + f"-UA/{self.firmware} Type/Application",
            "grandstream": f"Grandstream Model HW {self.model} SW {self.firmware} DevId {mac}",
            "fanvil": f"Fanvil {self.model} {self.firmware} {mac}",
            "gigaset": f"Gigaset {self.model} IP PRO/{self.firmware}+build.a546b91;{up}",
            "cisco": f"Cisco-{self.model}/{self.firmware} ({mac})",
            "panasonic": f"Panasonic_{self.model}/{self.firmware} ({mac})",
        }[self.vendor]

    def get(self, url: str, name: str) -> tuple[int, bytes]:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5,
                                          source_address=(self.ip, 0))
        path = parts.path.rstrip("/") + "/" + name
        try:
            conn.request("GET", path, headers={"User-Agent": self.user_agent})
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        self.got.append((name, response.status))
        return response.status, body

    def boot(self, url: str) -> list[tuple[str, int]]:
        """Fetch from `url` (the directory the redirect service or DHCP gave the phone)."""
        self.got = []
        getattr(self, f"_{self.vendor}")(url)
        return self.got

    # --- per vendor: what the factory firmware asks for -----------------------------------------

    def _yealink(self, url: str) -> None:
        # common boot file, then the MAC boot file; its include:config lines, top to bottom [V]
        self.get(url, "y000000000000.boot")
        status, body = self.get(url, f"{self.mac}.boot")
        if status == 200:
            for name in re.findall(r'^include:config "([^"]+)"', body.decode(), re.M):
                self.get(url, name)
        else:  # legacy flow without boot files: common cfg, then <mac>.cfg [V]
            self.get(url, "y000000000000.cfg")
            self.get(url, f"{self.mac}.cfg")

    def _snom(self, url: str) -> None:
        self.get(url, f"{self.mac.upper()}.xml")  # {mac} in setting_server, uppercase [V]

    def _poly(self, url: str) -> None:
        # the MAC master file, else 000000000000.cfg; then CONFIG_FILES in order [V]; then the
        # phone's own contact directory, usually absent [I]
        status, body = self.get(url, f"{self.mac}.cfg")
        if status != 200:
            status, body = self.get(url, "000000000000.cfg")
        if status == 200:
            match = re.search(r'CONFIG_FILES="([^"]*)"', body.decode())
            for name in (n.strip() for n in (match.group(1) if match else "").split(",")):
                if name:
                    self.get(url, name.replace("[PHONE_MAC_ADDRESS]", self.mac))
        self.get(url, f"{self.mac}-directory.xml")

    def _grandstream(self, url: str) -> None:
        # cfg<mac> (binary), cfg<mac>.xml, then cfg<model>.xml, cfg.xml while none is found [V]
        for name in (f"cfg{self.mac}", f"cfg{self.mac}.xml", f"cfg{self.model.lower()}.xml",
                     "cfg.xml"):
            if self.get(url, name)[0] == 200:
                break

    def _cisco(self, url: str) -> None:
        self.get(url, f"{self.mac}.xml")  # Profile_Rule .../$MA.xml, as provctl sets it [I]

    def _fanvil(self, url: str) -> None:
        self.get(url, f"{self.mac}.cfg")  # [V]

    def _gigaset(self, url: str) -> None:
        self.get(url, f"{self.mac}.xml")  # %MACD.xml on Nx70 [V]

    def _panasonic(self, url: str) -> None:
        # the model bootstrap, then the standard file it names (Config{MAC}.cfg) [I]
        self.get(url, f"{self.model}.cfg")
        self.get(url, f"Config{self.mac.upper()}.cfg")


def scan(url: str, count: int, ip: str = "127.0.0.66") -> list[int]:
    """Someone guessing token directories and MACs: `count` requests, all misses."""
    statuses = []
    for i in range(count):
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5,
                                          source_address=(ip, 0))
        conn.request("GET", f"/{i:032x}/0015650000{i:02x}.cfg",
                     headers={"User-Agent": "Mozilla/5.0 (scanner)"})
        statuses.append(conn.getresponse().status)
        conn.close()
    return statuses
