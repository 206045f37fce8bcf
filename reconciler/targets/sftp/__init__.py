"""The SFTP target, in layers: wire (the SFTP v3 codec, pure), connection (paramiko: SSH,
host keys, the session pool; the only module that imports paramiko), engine (the pipeline
over sessions), jobs (one file or directory each), target (the Store primitives)."""

from reconciler.targets.sftp.connection import fingerprint
from reconciler.targets.sftp.target import SftpTarget

__all__ = ["SftpTarget", "fingerprint"]
