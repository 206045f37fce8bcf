"""A memory target with files outside its trees (access logs), for the log reader's tests."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from reconciler.targets.memory import MemoryTarget


class Outside(MutableMapping[str, bytes]):
    """The memory host's files by absolute path, as bytes (what stat_file/read_range see)."""

    def __init__(self, target: MemoryTarget):
        self.files = target.host.files

    def __getitem__(self, path: str) -> bytes:
        return self.files[path][0]

    def __setitem__(self, path: str, data: bytes) -> None:
        self.files[path] = (data, 0.0)

    def __delitem__(self, path: str) -> None:
        del self.files[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


class LogTarget(MemoryTarget):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.outside = Outside(self)
