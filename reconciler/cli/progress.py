"""Progress of a long run on a terminal (tqdm, the only user): phase, N/M, rate and ETA.

Shown on stderr only when stderr is a terminal; elsewhere (the daemon, cron, CI, a pipe) the
reporter is never made and nothing is printed, so logs stay line-oriented. Without colour
(NO_COLOR, --no-color) the bar is plain text redrawn with a carriage return: no escape codes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO, Any

from tqdm import tqdm

# phase prefix -> (what is counted, unit)
_COUNTED = {"render": ("phones rendered", "phone"), "publish": ("files published", "file"),
            "delete": ("files deleted", "file"), "register": ("registrations", "change")}
_PHASES = {"load": "loading and validating the desired state", "observe": "observing targets"}


class Progress:
    """Called as progress(phase, done, total[, note]) by the pipeline (Options.progress); a
    note (the redirect services' rates while registering) is shown after the bar and redrawn
    at most every `refresh` seconds while the count stands still."""

    def __init__(self, stream: IO[str], colour: bool, refresh: float = 0.5,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.colour = colour
        self.refresh = refresh
        self._clock = clock
        self._phase: str | None = None
        self._bar: Any = None
        self._note = ""
        self._drawn = 0.0

    def __call__(self, phase: str, done: int, total: int, note: str = "") -> None:
        if phase != self._phase:
            self.close()
            self._phase = phase
            kind, _, where = phase.partition(" ")
            if kind in _COUNTED and total:
                label, unit = _COUNTED[kind]
                self._bar = tqdm(total=total, desc=f"{label} ({where})" if where else label,
                                 unit=unit, file=self.stream, dynamic_ncols=True,
                                 mininterval=0.2, ascii=not self.colour,
                                 colour="green" if self.colour else None, leave=True)
            elif kind in _PHASES:
                self.stream.write(f"{_PHASES[kind]}…\n")
                self.stream.flush()
        if self._bar is None:
            return
        if note != self._note:
            self._note = note
            self._bar.set_postfix_str(note, refresh=False)
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)
            self._drawn = self._clock()
        elif note and self._clock() - self._drawn >= self.refresh:
            self._bar.refresh()
            self._drawn = self._clock()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._phase = None
        self._note = ""
