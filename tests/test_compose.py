"""Debian's docker-compose (1.29) against ``pinnace serve``: a two-service project with a
user network, a named volume, a published port and depends_on; up, ps, logs, exec,
down -v."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from conftest import Pinnace

COMPOSE_FILE = """\
version: "2.4"
services:
  db:
    image: busybox
    command: ["sh", "-c", "echo db-ready > /data/state; echo db-up; httpd -f -p 5000 -h /data"]
    volumes:
      - dbdata:/data
    networks: [backend]
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www; echo hello-web > /www/index.html; echo web-up;
                           httpd -f -p 80 -h /www"]
    depends_on: [db]
    ports:
      - "8088:80"
    networks: [backend]
volumes:
  dbdata: {}
networks:
  backend: {}
"""


def test_compose_up_ps_logs_exec_down(api_socket_ns: Path, netns: Path, npn: Pinnace,
                                      tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE)
    env = {**os.environ, "DOCKER_HOST": f"unix://{api_socket_ns}",
           "DOCKER_CONFIG": str(tmp_path / "docker-config")}

    def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["docker-compose", "-p", "demo", "--no-ansi", *args],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=180)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} exited {proc.returncode}"
                                 f"\n{proc.stdout}\n{proc.stderr}")
        return proc

    try:
        compose("up", "-d")
        ps = compose("ps").stdout
        assert [line.split()[0] for line in ps.splitlines()[2:]] == ["demo_db_1", "demo_web_1"]
        assert "0.0.0.0:8088->80/tcp" in ps
        assert ps.count(" Up ") == 2
        logs = ""
        deadline = time.monotonic() + 30
        while "web-up" not in logs or "db-up" not in logs:
            assert time.monotonic() < deadline, logs
            logs = compose("logs", "--no-color").stdout
            time.sleep(0.2)
        # the service reaches the other over the user network by its service name (the
        # alias compose gives it) and by its container name; the volume holds db's file
        for name in ("db", "demo_db_1"):
            got = compose("exec", "-T", "web", "sh", "-c",
                          f"printf 'GET /state HTTP/1.0\\r\\n\\r\\n' | nc {name} 5000").stdout
            assert got.startswith("HTTP/1.1 200 OK") and got.endswith("\n\ndb-ready\n"), got
        published = subprocess.run(["nsenter", f"--net={netns}", "busybox", "nc", "127.0.0.1",
                                    "8088"], input="GET / HTTP/1.0\r\n\r\n",
                                   capture_output=True, text=True, timeout=30)
        assert published.stdout.endswith("\n\nhello-web\n"), published.stdout
        assert npn("volume", "ls", "-q").stdout.split() == ["demo_dbdata"]
    finally:
        compose("down", "-v", check=False)
    assert npn("ps", "-aq").stdout == ""
    assert npn("volume", "ls", "-q").stdout == ""
    assert "demo_backend" not in npn("network", "ls", "--format", "{{.Name}}").stdout
