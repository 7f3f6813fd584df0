"""``pinnace exec``, and terminals: run -it, exec -it, attach with detach keys."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Pinnace
from test_detached import inspect, until


def test_exec_joins_every_namespace_and_the_cgroup(pn: Pinnace, busybox: str) -> None:
    pn("run", "-d", "--name", "box", "-h", "boxhost", busybox, "sleep", "60")
    pid = inspect(pn, "box")["State"]["Pid"]
    out = pn("exec", "box", "sh", "-c",
             "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; readlink /proc/self/ns/net;"
             " readlink /proc/self/ns/mnt; readlink /proc/self/ns/pid;"
             " cat /proc/self/cgroup").stdout
    lines = out.splitlines()
    assert lines[0] == "boxhost"
    assert lines[1].strip() == "sleep 60"  # it sees the container's PID 1, not the host's
    for line, ns in zip(lines[2:5], ("net", "mnt", "pid"), strict=True):
        assert line == os.readlink(f"/proc/{pid}/ns/{ns}"), ns
    container_cgroups = Path(f"/proc/{pid}/cgroup").read_text()
    assert all(line.endswith(":/") for line in lines[5:])  # the container's cgroup namespace
    assert container_cgroups.count("\n") == len(lines[5:])


def test_exec_exit_codes_env_workdir_user(pn: Pinnace, busybox: str) -> None:
    pn("run", "-d", "--name", "box", "-e", "FROM_RUN=1", busybox, "sleep", "60")
    assert pn("exec", "box", "sh", "-c", "exit 9", check=False).returncode == 9
    out = pn("exec", "-e", "X=2", "-w", "/tmp", "-u", "nobody", "box", "sh", "-c",
             "echo $FROM_RUN $X; pwd; id -un").stdout.split()
    assert out == ["1", "2", "/tmp", "nobody"]
    missing = pn("exec", "box", "nosuchcmd", check=False)
    assert missing.returncode == 127 and "executable file not found" in missing.stderr
    assert pn("exec", "box", "/etc/passwd", check=False).returncode == 126
    assert pn("exec", "-i", "box", "cat", input="piped\n").stdout == "piped\n"
    assert pn("exec", "box", "cat", input="not read without -i\n").stdout == ""


def test_exec_detached_keeps_running(pn: Pinnace, busybox: str) -> None:
    pn("run", "-d", "--name", "box", busybox, "sleep", "60")
    assert pn("exec", "-d", "box", "sh", "-c", "sleep 1; echo done > /tmp/marker").stdout == ""
    until(lambda: pn("exec", "box", "cat", "/tmp/marker", check=False).stdout == "done\n",
          what="the detached exec to finish")


def on_pty(argv: list[str], script: list[tuple[float, bytes]], timeout: float = 60,
           size: tuple[int, int] = (33, 111)) -> tuple[bytes, int]:
    """Run ``argv`` with a pty as its terminal, typing ``script`` (delay, bytes)."""
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    output, pending = b"", list(script)
    deadline = time.monotonic() + timeout
    next_at = time.monotonic() + (pending[0][0] if pending else 0)
    while time.monotonic() < deadline:
        if pending and time.monotonic() >= next_at:
            os.write(master, pending.pop(0)[1])
            next_at = time.monotonic() + (pending[0][0] if pending else 0)
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                chunk = b""
            if not chunk and proc.poll() is not None:
                break
            output += chunk
        elif proc.poll() is not None and not pending:
            break
    os.close(master)
    return output, proc.wait(timeout=10)


def test_run_it_gives_a_real_terminal(pn: Pinnace, busybox: str) -> None:
    out, code = on_pty(pn.argv("run", "-it", "--rm", busybox, "sh"), [
        (1.5, b"tty; stty size; echo $((6*7))\r"),
        (0.5, b"trap 'echo caught-int' INT; sleep 5\r"),
        (1.0, b"\x03"),  # Ctrl-C reaches the container's foreground process
        (0.5, b"exit 5\r")])
    text = out.decode(errors="replace")
    assert "/dev/pts/0" in text and "33 111" in text and "42" in text, text
    assert "caught-int" in text, text
    assert code == 5


def test_exec_it_and_attach_with_detach_keys(pn: Pinnace, busybox: str) -> None:
    pn("run", "-dit", "--name", "term", busybox, "sh")
    out, code = on_pty(pn.argv("exec", "-it", "term", "sh"), [
        (1.5, b"tty; stty size\r"), (0.5, b"exit 3\r")], size=(20, 70))
    assert b"/dev/pts/" in out and b"20 70" in out and code == 3, out
    out, code = on_pty(pn.argv("attach", "term"), [
        (1.5, b"echo $((6*7))\r"), (0.5, b"\x10\x11")])
    assert b"42" in out and code == 0, out
    assert inspect(pn, "term")["State"]["Status"] == "running"  # detached, not stopped
    out, code = on_pty(pn.argv("attach", "--detach-keys", "ctrl-x", "term"), [
        (1.5, b"exit 4\r")])
    assert code == 4, out
    until(lambda: inspect(pn, "term")["State"]["Status"] == "exited")


def test_run_it_keeps_input_typed_before_the_container_is_ready(pn: Pinnace,
                                                                  busybox: str) -> None:
    import shlex

    # the input is on the terminal before pinnace sets it raw: nothing may flush it
    proc = subprocess.run(["script", "-qec", shlex.join(pn.argv("run", "-it", "--rm", busybox,
                                                                "sh")), "/dev/null"],
                          input="echo typed-$((1+1)); exit 3\n", capture_output=True,
                          text=True, env=pn.env, timeout=120)
    assert "typed-2" in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == 3


def attached_client(pn: Pinnace, *args: str) -> subprocess.Popen[str]:
    """``pinnace attach args`` once it has printed the container's first tick."""
    client = pn.popen("attach", "--no-stdin", *args, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE)
    assert client.stdout is not None
    assert "tick" in client.stdout.readline()
    return client


@pytest.mark.parametrize("how", [("-dt",), ("-d",)], ids=["tty", "no-tty"])
def test_attach_without_proxy_leaves_on_term_and_int(pn: Pinnace, busybox: str,
                                                     how: tuple[str, ...]) -> None:
    pn("run", *how, "--name", "ticker", busybox, "sh", "-c",
       "trap 'echo got-signal > /tmp/signalled' INT TERM; while :; do echo tick; sleep 0.2; done")
    extra = () if how == ("-dt",) else ("--no-sig-proxy",)  # with a tty nothing is proxied
    for signum in (signal.SIGTERM, signal.SIGINT):
        client = attached_client(pn, *extra, "ticker")
        client.send_signal(signum)
        assert client.wait(timeout=20) == 128 + signum
        client.communicate()
    client = attached_client(pn, *extra, "ticker")
    for _ in range(3):
        client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=20) != 0
    client.communicate()
    assert inspect(pn, "ticker")["State"]["Status"] == "running"
    assert pn("exec", "ticker", "cat", "/tmp/signalled", check=False).returncode != 0


def test_attach_proxies_signals_by_default_without_a_tty(pn: Pinnace, busybox: str) -> None:
    pn("run", "-d", "--name", "ticker", busybox, "sh", "-c",
       "trap 'echo got-term; exit 7' TERM; while :; do echo tick; sleep 0.2; done")
    client = attached_client(pn, "ticker")
    client.send_signal(signal.SIGTERM)
    out, _ = client.communicate(timeout=20)
    assert "got-term" in out and client.returncode == 7
