"""A minimal busybox rootfs, from Debian's busybox-static, for tests and demos.

``python -m pinnace.testing.busybox OUT.tar`` writes it as a tar (the
Makefile's ``busybox-rootfs.tar``). The same entries make the directory and
the tar; the tar is deterministic for a given busybox binary (sorted names,
root-owned, every mtime the binary's).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from pinnace.plugin import Unavailable

_DIRS = {
    "bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "proc": 0o555, "root": 0o700,
    "sbin": 0o755, "sys": 0o555, "tmp": 0o1777, "usr": 0o755, "usr/bin": 0o755,
    "usr/sbin": 0o755, "var": 0o755,
}
_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n"
                  "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
}
_FIX = "install Debian's static busybox: apt-get install busybox-static"


class _Entry(NamedTuple):
    path: str           # relative to the rootfs root
    kind: str           # "dir", "file", "symlink"
    mode: int = 0o644
    data: bytes = b""   # file contents
    target: str = ""    # symlink target


def find_busybox() -> Path:
    """The static busybox binary (/bin/busybox, else ``busybox`` on PATH), or Unavailable."""
    found = "/bin/busybox" if os.path.exists("/bin/busybox") else shutil.which("busybox")
    if found is None:
        raise Unavailable(f"busybox not found; {_FIX}")
    path = Path(found)
    if not _is_static(path):
        raise Unavailable(f"{path} is dynamically linked and would not run in a rootfs; {_FIX}")
    return path


def _is_static(path: Path) -> bool:
    """Whether the ELF file ``path`` has no program interpreter (PT_INTERP)."""
    with open(path, "rb") as f:
        ident = f.read(64)
        if ident[:4] != b"\x7fELF":
            return False
        end = "<" if ident[5] == 1 else ">"
        if ident[4] == 2:  # 64-bit
            phoff, = struct.unpack_from(end + "Q", ident, 0x20)
            phentsize, phnum = struct.unpack_from(end + "HH", ident, 0x36)
        else:
            phoff, = struct.unpack_from(end + "I", ident, 0x1C)
            phentsize, phnum = struct.unpack_from(end + "HH", ident, 0x2A)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from(end + "I", table, i * phentsize)[0] != 3  # PT_INTERP
               for i in range(phnum))


def _entries(busybox: Path) -> Iterator[_Entry]:
    """Every entry of the rootfs, parents before children, sorted."""
    applets = subprocess.run([busybox, "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    entries = [_Entry(d, "dir", mode) for d, mode in _DIRS.items()]
    entries += [_Entry(p, "file", 0o644, text.encode()) for p, text in _FILES.items()]
    entries.append(_Entry("bin/busybox", "file", 0o755, busybox.read_bytes()))
    for applet in applets:
        if "/" in applet and applet != "bin/busybox":  # "linuxrc" and the like stay out
            target = os.path.relpath("bin/busybox", os.path.dirname(applet))
            entries.append(_Entry(applet, "symlink", 0o777, target=target))
    yield from sorted(entries, key=lambda e: e.path.split("/"))


def build_busybox_rootfs(dest: Path) -> None:
    """Write the rootfs into ``dest`` (created if missing; it should be empty)."""
    busybox = find_busybox()
    dest.mkdir(parents=True, exist_ok=True)
    for entry in _entries(busybox):
        path = dest / entry.path
        if entry.kind == "dir":
            path.mkdir(exist_ok=True)
            os.chmod(path, entry.mode)  # not mkdir's mode: the umask would strip 1777
        elif entry.kind == "file":
            path.write_bytes(entry.data)
            os.chmod(path, entry.mode)
        else:
            os.symlink(entry.target, path)


def build_busybox_tar(path: Path) -> None:
    """Write the rootfs as a deterministic tar at ``path`` (atomically: temp file, rename)."""
    import io
    import tarfile

    busybox = find_busybox()
    mtime = int(busybox.stat().st_mtime)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for entry in _entries(busybox):
                info = tarfile.TarInfo(entry.path)
                info.mode, info.mtime = entry.mode, mtime
                if entry.kind == "dir":
                    info.type = tarfile.DIRTYPE
                elif entry.kind == "symlink":
                    info.type, info.linkname = tarfile.SYMTYPE, entry.target
                else:
                    info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data) if entry.kind == "file" else None)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m pinnace.testing.busybox OUT.tar``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m pinnace.testing.busybox OUT.tar", file=sys.stderr)
        return 2
    try:
        build_busybox_tar(Path(args[0]))
    except Unavailable as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
