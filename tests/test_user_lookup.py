"""``run -u`` and ``exec -u`` read the container's /etc/passwd and /etc/group inside its
root filesystem: a link to a host file, a device or a FIFO is one error line (or, for a
link that stays inside, the container's own file), never host data, never a hang."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from conftest import Pinnace, host_leftovers

HOST_LINE = "someuser:x:4242:4242:planted on the host:/:/bin/sh\n"


@pytest.fixture
def host_passwd(tmp_path: Path) -> Path:
    """A passwd file on the host that no container lookup may ever read."""
    path = tmp_path / "host-passwd"
    path.write_text(HOST_LINE)
    return path


def image_with_passwd(pn: Pinnace, busybox_tar: Path, tmp_path: Path, name: str,
                      *members: tarfile.TarInfo, data: bytes = b"") -> str:
    """busybox with its /etc/passwd replaced by ``members`` (the last one is /etc/passwd;
    ``data`` is the contents of a regular file among them)."""
    out = tmp_path / f"{name}.tar"
    with tarfile.open(busybox_tar) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            if member.name.lstrip("./") != "etc/passwd":
                dst.addfile(member, src.extractfile(member) if member.isreg() else None)
        for member in members:
            dst.addfile(member, io.BytesIO(data) if member.isreg() else None)
    pn("import", "-c", 'CMD ["sh"]', str(out), f"{name}:latest")
    return f"{name}:latest"


def member(name: str, kind: bytes, target: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size, info.mode = kind, target, size, 0o644
    return info


def assert_refused(pn: Pinnace, *args: str) -> str:
    """``pinnace args`` fails fast with one ``Error:`` line and exit 125; returns it."""
    proc = pn(*args, check=False, timeout=30)
    assert proc.returncode == 125, proc.stderr
    assert proc.stderr.startswith("Error:") and proc.stderr.count("\n") == 1, proc.stderr
    assert "4242" not in proc.stdout + proc.stderr
    return proc.stderr


@pytest.mark.parametrize("case", ["host-link", "escaping-link", "dev-zero", "fifo"])
def test_run_refuses_a_passwd_that_is_not_the_images_file(
        pn: Pinnace, busybox_tar: Path, tmp_path: Path, host_passwd: Path, case: str) -> None:
    members = {
        "host-link": [member("etc/passwd", tarfile.SYMTYPE, str(host_passwd))],
        "escaping-link": [member("etc/passwd", tarfile.SYMTYPE,
                                 "../../../../../../../.." + str(host_passwd))],
        "dev-zero": [member("etc/passwd", tarfile.SYMTYPE, "/dev/zero")],
        "fifo": [member("etc/passwd", tarfile.FIFOTYPE)],
    }[case]
    image = image_with_passwd(pn, busybox_tar, tmp_path, case, *members)
    error = assert_refused(pn, "run", "--rm", "-u", "someuser", image, "id", "-u")
    if case == "fifo":
        assert error == "Error: /etc/passwd in the container's filesystem is not a regular " \
                        "file (a FIFO)\n"
    else:  # the link leads nowhere inside the rootfs (imports skip device nodes): no passwd
        assert "unable to find user someuser" in error
    assert_refused(pn, "run", "--name", "kept", "-u", "someuser", image, "true")
    assert pn("ps", "-aq").stdout == ""
    assert host_leftovers(pn.root) == []


def test_run_follows_a_link_that_stays_inside(pn: Pinnace, busybox_tar: Path,
                                              tmp_path: Path) -> None:
    """An absolute link means the image's own file, as it would inside the container."""
    own = b"someuser:x:4343:4343:the image's own:/home/own:/bin/sh\n"
    image = image_with_passwd(
        pn, busybox_tar, tmp_path, "inside",
        member("etc/real-passwd", tarfile.REGTYPE, size=len(own)),
        member("etc/passwd", tarfile.SYMTYPE, "/../etc/real-passwd"), data=own)
    out = pn("run", "--rm", "-u", "someuser", image, "sh", "-c", "id -u; echo $HOME")
    assert out.stdout.split() == ["4343", "/home/own"]


def test_run_refuses_an_oversized_passwd(pn: Pinnace, busybox_tar: Path,
                                         tmp_path: Path) -> None:
    from pinnace.runtime.users import PASSWD_LIMIT

    big = b"#" * PASSWD_LIMIT + b"\nsomeuser:x:4242:4242::/:/bin/sh\n"
    image = image_with_passwd(pn, busybox_tar, tmp_path, "big",
                              member("etc/passwd", tarfile.REGTYPE, size=len(big)), data=big)
    error = assert_refused(pn, "run", "--rm", "-u", "someuser", image, "true")
    assert error == f"Error: /etc/passwd in the container's filesystem is larger than " \
                    f"{PASSWD_LIMIT} bytes\n"
    assert pn("ps", "-aq").stdout == ""


def test_exec_reads_the_running_containers_own_files(pn: Pinnace, busybox: str,
                                                     host_passwd: Path) -> None:
    """The container itself swaps its /etc/passwd for a link to a host file, /dev/zero
    and a FIFO: ``exec -u`` is refused each time, and exec without -u still works."""
    pn("run", "-d", "--name", "box", busybox, "sleep", "60")
    pn("exec", "box", "ln", "-sf", str(host_passwd), "/etc/passwd")
    assert "unable to find user someuser" in assert_refused(pn, "exec", "-u", "someuser",
                                                           "box", "id", "-u")
    pn("exec", "box", "ln", "-sf", "/dev/zero", "/etc/passwd")
    assert "not a regular file (a character device)" in assert_refused(
        pn, "exec", "-u", "someuser", "box", "id", "-u")
    pn("exec", "box", "sh", "-c", "rm /etc/passwd && mkfifo /etc/passwd")
    assert "not a regular file (a FIFO)" in assert_refused(pn, "exec", "-u", "someuser",
                                                          "box", "id", "-u")
    assert pn("exec", "box", "echo", "ok", timeout=30).stdout == "ok\n"
