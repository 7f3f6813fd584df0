"""``pinnace build``: Dockerfiles to images with real containers on each storage, the
layer cache, multi-stage builds, contexts, and bad input leaving nothing behind."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from conftest import Pinnace, host_leftovers

from pinnace.build import words
from pinnace.build.dockerfile import parse
from pinnace.build.ignore import Ignore
from pinnace.errors import InvalidConfig

BUILD = ("build", "--net", "none")


def context(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    """A build context directory holding ``dockerfile`` and ``files``."""
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(text)
    return ctx


def config(pn: Pinnace, image: str) -> dict:
    return json.loads(pn("image", "inspect", image).stdout)[0]


def run(pn: Pinnace, image: str, *command: str, storage: str | None = None) -> str:
    extra = ["--storage", storage] if storage else []
    return pn("run", "--rm", "--net", "none", *extra, image, *command).stdout


def nothing_left(pn: Pinnace, root: Path) -> None:
    """No container (row, snapshot, mount) is left by a build."""
    assert pn("ps", "-aq").stdout == ""
    assert host_leftovers(root) == []
    proc = pn("system", "check", check=False)
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stdout + proc.stderr


# ------------------------------------------------------------ parsing, words, ignore
def test_substitution_as_docker() -> None:
    env = {"A": "x", "E": ""}
    assert words.expand("${A:-d} ${B:-d} ${E:-d} ${E-d}", env) == "x d d "
    assert words.expand("${A:+alt} ${B:+alt} ${E:+alt} ${E+alt}", env) == "alt   alt"
    assert words.expand(r"'$A' \$A $A$A", env) == "$A $A xx"
    assert words.split('K="two words" L=$A', env) == ["K=two words", "L=x"]
    assert words.expand("${A:-${B:-deep}}", {}) == "deep"
    with pytest.raises(InvalidConfig, match="missing"):
        words.expand("${A", env)


def test_parse_stages_continuations_and_escape() -> None:
    df = parse("# syntax=docker/dockerfile:1\n# escape=`\nARG B=busybox\nFROM $B AS one\n"
               "RUN echo a `\n  b\nFROM one\nCOPY --from=one --chown=1:2 a /b\n")
    assert df.escape == "`"
    assert [a.args for a in df.global_args] == ["B=busybox"]
    assert [(s.name, s.base) for s in df.stages] == [("one", "$B"), (None, "one")]
    first = df.stages[0].instructions[0]
    assert (first.keyword, first.line) == ("RUN", 5)
    assert "b" in first.args and "`" not in first.args
    assert df.stages[1].instructions[0].flags == {"from": "one", "chown": "1:2"}


@pytest.mark.parametrize(("text", "error"), [
    ("FROM busybox\nRUN\n", "line 2: RUN: needs at least one argument"),
    ("FROM busybox\nFRM x\n", "line 2: unknown instruction: FRM"),
    ("RUN echo\n", "line 1: RUN: the first instruction must be FROM"),
    ("FROM busybox\nCOPY --bogus=1 a b\n", "line 2: COPY: unknown flag: --bogus"),
    ("FROM busybox\nCOPY a\n", "line 2: COPY: needs a source and a destination"),
    ("FROM busybox\nSHELL sh -c\n", "line 2: SHELL: takes a JSON array"),
    ("FROM busybox AS\n", "line 1: FROM: expected FROM IMAGE"),
    ("# just a comment\n", "no FROM"),
])
def test_syntax_errors_name_the_line(text: str, error: str) -> None:
    with pytest.raises(InvalidConfig, match=error):
        parse(text)


def test_dockerignore_rules() -> None:
    ignore = Ignore("# comment\n\n*.log\n!keep.log\n**/cache\n/build/\nsub/*/x\n")
    assert ignore.excluded("a.log") and not ignore.excluded("keep.log")
    assert ignore.excluded("cache") and ignore.excluded("a/b/cache/file")
    assert ignore.excluded("build/out") and not ignore.excluded("builder")
    assert ignore.excluded("sub/one/x") and not ignore.excluded("sub/one/two/x")
    assert not ignore.excluded("src/main.c")


# ------------------------------------------------------------ building
DOCKERFILE = """\
FROM busybox
ARG GREETING=hello
ENV APP=/app NAME="two words"
WORKDIR $APP
COPY greeting.txt ./
COPY data /data/
RUN echo "$GREETING from $NAME" > built.txt && rm /bin/vi && mkdir -p /var/made
LABEL org.example.kind=test
EXPOSE 8080/tcp
VOLUME /var/lib/app
USER 1000:1000
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --retries=2 CMD cat /app/built.txt
CMD ["cat", "/app/built.txt"]
"""


def test_build_run_history_and_config(pn: Pinnace, root: Path, busybox: str,
                                      tmp_path: Path) -> None:
    ctx = context(tmp_path, DOCKERFILE, {"greeting.txt": "hi\n", "data/a/b.txt": "b\n"})
    out = pn(*BUILD, "-t", "app:1", "--build-arg", "GREETING=howdy", str(ctx)).stdout
    assert "Step 1/14 : FROM busybox" in out and "Step 7/14 : RUN echo" in out
    assert " ---> Running in " in out and "Removing intermediate container" in out
    assert out.rstrip().endswith("Successfully tagged app:1")
    image = config(pn, "app:1")
    assert out.splitlines()[-2] == f"Successfully built {image['Id'][7:19]}"
    assert run(pn, "app:1") == "howdy from two words\n"
    assert run(pn, "app:1", "sh", "-c", "id -u; cat greeting.txt /data/a/b.txt; "
               "test -e /bin/vi || echo vi gone; ls -d /var/made") == \
        "1000\nhi\nb\nvi gone\n/var/made\n"
    cfg = image["Config"]
    assert cfg["WorkingDir"] == "/app" and cfg["User"] == "1000:1000"
    assert "APP=/app" in cfg["Env"] and "NAME=two words" in cfg["Env"]
    assert cfg["Labels"] == {"org.example.kind": "test"}
    assert cfg["ExposedPorts"] == {"8080/tcp": {}} and cfg["Volumes"] == {"/var/lib/app": {}}
    assert cfg["StopSignal"] == "SIGINT"
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "cat /app/built.txt"],
                                  "Interval": 30 * 10**9, "Retries": 2}
    history = pn("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Size}}",
                 "app:1").stdout.splitlines()
    assert len(history) == 14  # the import's line and one per instruction after FROM
    assert history[0].startswith('/bin/sh -c #(nop)  CMD ["cat", "/app/built.txt"]|0')
    run_line = next(h for h in history if "built.txt &&" in h)
    assert run_line.startswith("|1 GREETING=howdy /bin/sh -c echo")
    nothing_left(pn, root)


def test_cache_reuses_and_one_change_rebuilds_from_its_copy(pn: Pinnace, root: Path,
                                                            busybox: str,
                                                            tmp_path: Path) -> None:
    ctx = context(tmp_path, "FROM busybox\nRUN echo one > /one\nCOPY src /src\n"
                  "RUN cat /src/* > /all\nCMD [\"cat\", \"/all\"]\n",
                  {"src/a": "a\n", "src/b": "b\n"})
    first = pn(*BUILD, "-q", str(ctx)).stdout.strip()
    again = pn(*BUILD, str(ctx)).stdout
    assert again.count(" ---> Using cache") == 4 and "Running in" not in again
    assert again.splitlines()[-1] == f"Successfully built {first[7:19]}"
    os.utime(ctx / "src" / "a", (1, 1))  # a new time alone is no change
    assert pn(*BUILD, "-q", str(ctx)).stdout.strip() == first
    (ctx / "src" / "b").write_text("B\n")
    changed = pn(*BUILD, "-t", "changed", str(ctx)).stdout
    steps = changed.split("Step ")[1:]
    assert ["Using cache" in s for s in steps] == [False, True, False, False, False]
    assert run(pn, "changed") == "a\nB\n"
    fresh = pn(*BUILD, "--no-cache", str(ctx)).stdout
    assert "Using cache" not in fresh and fresh.count("Running in") == 2
    # intermediate images are untagged: image prune takes them, and the cache with them
    pn("image", "prune", "-f")
    db = sqlite3.connect(root / "state.db")
    kept = {row[0] for row in db.execute("SELECT image_id FROM build_cache")}
    assert kept == {config(pn, "changed")["Id"]}  # only the tagged image is left
    after = pn(*BUILD, str(ctx)).stdout
    assert "Using cache" not in after
    stale = db.execute("SELECT count(*) FROM build_cache WHERE image_id NOT IN "
                       "(SELECT id FROM images)").fetchone()[0]
    assert stale == 0


@pytest.mark.parametrize("storage", ["dir", "btrfs"])
def test_same_dockerfile_on_each_storage(pn: Pinnace, busybox: str, tmp_path: Path,
                                         storage: str) -> None:
    ctx = context(tmp_path, "FROM busybox\nRUN mkdir -p /d /x/y && echo x > /d/f && "
                  "echo z > /x/y/z && rm /bin/vi\nRUN rm /d/f && echo y > /d/g && rm -r /x/y\n")
    pn(*BUILD, "--storage", storage, "-t", f"on-{storage}", str(ctx))
    assert run(pn, f"on-{storage}", "sh", "-c", "ls /d /x; test -e /bin/vi || echo gone",
               storage=storage) == "/d:\ng\n\n/x:\ngone\n"
    layers = pn("history", "--format", "{{.Size}}", f"on-{storage}").stdout.split()
    assert len(layers) == 3


@pytest.mark.parametrize("isolation", ["unshare", "oci"])
def test_same_dockerfile_under_each_isolation(pn: Pinnace, root: Path, busybox: str,
                                             tmp_path: Path, isolation: str) -> None:
    ctx = context(tmp_path, "FROM busybox\nRUN echo $$ > /pid && id -u > /uid && "
                  "hostname > /host\nRUN exit 5\n")
    proc = pn(*BUILD, "--isolation", isolation, str(ctx), check=False)
    assert proc.returncode == 1 and "returned a non-zero code: 5" in proc.stderr
    assert proc.stdout.count("Running in") == 2
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo $$ > /pid && id -u > /uid && "
                                    "hostname > /host\n")
    out = pn(*BUILD, "--isolation", isolation, "-t", f"iso-{isolation}", str(ctx)).stdout
    assert "Using cache" in out  # the step ran in the failed build
    assert run(pn, f"iso-{isolation}", "cat", "/pid", "/uid") == "1\n0\n"
    nothing_left(pn, root)


def test_multi_stage_target_copy_from_and_onbuild(pn: Pinnace, busybox: str,
                                                  tmp_path: Path) -> None:
    ctx = context(tmp_path, """\
ARG BASE=busybox
FROM ${BASE} AS builder
ARG VERSION
RUN echo "v${VERSION:-0}" > /artifact && mkdir /tree && echo t > /tree/leaf
ONBUILD RUN echo triggered > /trigger
FROM builder AS child
FROM busybox AS final
COPY --from=builder /artifact /tree /out/
COPY --from=child /trigger /trigger
COPY --from=0 --chmod=600 /artifact /private
CMD ["cat", "/out/artifact", "/out/leaf", "/trigger"]
FROM busybox AS never
RUN exit 9
""")
    out = pn(*BUILD, "--target", "final", "--build-arg", "VERSION=7", "-t", "ms",
             str(ctx)).stdout
    assert "# Executing 1 build trigger" in out and "exit 9" not in out
    assert run(pn, "ms") == "v7\nt\ntriggered\n"
    assert run(pn, "ms", "stat", "-c", "%a %u", "/private") == "600 0\n"
    assert config(pn, "ms")["Config"]["OnBuild"] is None
    proc = pn(*BUILD, "--target", "nope", str(ctx), check=False)
    assert proc.returncode == 125 and "target stage 'nope' could not be found" in proc.stderr


def test_arg_env_shell_and_entrypoint(pn: Pinnace, busybox: str, tmp_path: Path) -> None:
    ctx = context(tmp_path, """\
FROM busybox
ARG A
ARG B=bee
ENV E=${A:-unset}-${B:+set}
SHELL ["/bin/sh", "-ec"]
RUN echo "$A $B $E" > /seen
ENTRYPOINT ["cat"]
""")
    pn(*BUILD, "--build-arg", "A=ay", "--build-arg", "UNUSED=1", "-t", "args", str(ctx))
    assert run(pn, "args", "/seen") == "ay bee ay-set\n"
    cfg = config(pn, "args")["Config"]
    assert cfg["Cmd"] is None and cfg["Entrypoint"] == ["cat"]
    assert cfg["Shell"] == ["/bin/sh", "-ec"] and "E=ay-set" in cfg["Env"]
    assert "A=ay" not in cfg["Env"]  # build args are not in the image's environment


def test_dockerignore_and_symlinks_in_the_context(pn: Pinnace, busybox: str,
                                                  tmp_path: Path) -> None:
    ctx = context(tmp_path, "FROM busybox\nCOPY . /ctx/\n",
                  {".dockerignore": "*.log\n!keep.log\n**/node_modules\n",
                   "a.log": "no", "keep.log": "yes", "src/node_modules/m": "no",
                   "src/main.c": "int main;"})
    secret = tmp_path / "outside-secret"
    secret.write_text("do not copy me")
    (ctx / "src" / "link").symlink_to(secret)
    pn(*BUILD, "-t", "ign", str(ctx))
    listing = run(pn, "ign", "find", "/ctx").split()
    assert sorted(listing) == ["/ctx", "/ctx/.dockerignore", "/ctx/Dockerfile",
                               "/ctx/keep.log", "/ctx/src", "/ctx/src/link",
                               "/ctx/src/main.c"]
    assert run(pn, "ign", "readlink", "/ctx/src/link") == f"{secret}\n"
    assert "do not copy" not in run(pn, "ign", "sh", "-c", "cat /ctx/src/link; true")


def test_context_on_stdin(pn: Pinnace, busybox: str, tmp_path: Path) -> None:
    out = pn(*BUILD, "-t", "plain", "-", input="FROM busybox\nRUN echo from stdin\n").stdout
    assert "from stdin" in out
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("Dockerfile", b"FROM busybox\nCOPY f /f\n"), ("f", b"in tar\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    proc = subprocess.run(pn.argv(*BUILD, "-q", "-"), input=buf.getvalue(),
                          capture_output=True, env=pn.env, check=True)
    image = proc.stdout.decode().strip()
    assert image.startswith("sha256:")
    assert run(pn, image, "cat", "/f") == "in tar\n"


def test_add_unpacks_a_local_tar_and_fails_clearly_on_a_url(pn: Pinnace, root: Path,
                                                            busybox: str,
                                                            tmp_path: Path) -> None:
    ctx = context(tmp_path, "FROM busybox\nADD files.tgz /unpacked/\nADD plain.txt /p\n",
                  {"plain.txt": "plain\n"})
    with tarfile.open(ctx / "files.tgz", "w:gz") as tar:
        info = tarfile.TarInfo("dir/inner.txt")
        info.size, info.uid, info.mode = 6, 42, 0o640
        tar.addfile(info, io.BytesIO(b"inner\n"))
    pn(*BUILD, "-t", "added", str(ctx))
    assert run(pn, "added", "sh", "-c", "cat /unpacked/dir/inner.txt /p; "
               "stat -c '%u %a' /unpacked/dir/inner.txt") == "inner\nplain\n42 640\n"
    (ctx / "Dockerfile").write_text("FROM busybox\nADD http://127.0.0.1:9/x /x\n")
    proc = pn(*BUILD, str(ctx), check=False)
    assert proc.returncode == 125
    assert "line 2: ADD: cannot fetch http://127.0.0.1:9/x" in proc.stderr
    nothing_left(pn, root)


def test_scratch_image(pn: Pinnace, busybox: str, tmp_path: Path) -> None:
    ctx = context(tmp_path, "FROM busybox AS tools\nFROM scratch\n"
                  "COPY --from=tools /bin/busybox /bin/busybox\n"
                  'ENTRYPOINT ["/bin/busybox"]\nCMD ["echo", "from scratch"]\n')
    pn(*BUILD, "-t", "tiny", str(ctx))
    assert run(pn, "tiny") == "from scratch\n"
    assert len(config(pn, "tiny")["RootFS"]["Layers"]) == 1


# ------------------------------------------------------------ bad input
@pytest.mark.parametrize(("dockerfile", "files", "error"), [
    ("FROM busybox\nCOPY ../x /x\n", {}, "forbidden path outside the build context: ../x"),
    ("FROM busybox\nCOPY missing /x\n", {}, "line 2: COPY: file not found in build context"),
    ("FROM busybox\nCOPY link/passwd /x\n", {}, "file not found in build context"),
    ("FROM busybox\nCOPY --from=nostage /x /x\n", {}, "nostage"),
    ("FROM no-such-image\n", {}, "base image no-such-image not found"),
    ("FROM busybox\nRUN\n", {}, "Dockerfile line 2: RUN: needs at least one argument"),
    ("FROM busybox\nCOPY --chown=nobody-here a /a\n", {"a": "a"}, "unable to find user"),
])
def test_bad_input_is_one_line_and_leaves_nothing(pn: Pinnace, root: Path, busybox: str,
                                                  tmp_path: Path, dockerfile: str,
                                                  files: dict[str, str], error: str) -> None:
    ctx = context(tmp_path, dockerfile, files)
    (ctx / "link").symlink_to("/etc")  # a directory symlink pointing outside the context
    images = pn("images", "-aq").stdout
    proc = pn(*BUILD, str(ctx), check=False)
    assert proc.returncode == 125, proc.stderr
    assert error in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert pn("images", "-aq").stdout.split() == images.split() or "FROM" not in dockerfile
    nothing_left(pn, root)


def test_failing_run_stops_the_build_and_leaves_no_container(pn: Pinnace, root: Path,
                                                             busybox: str,
                                                             tmp_path: Path) -> None:
    ctx = context(tmp_path, "FROM busybox\nRUN echo before\n"
                  "RUN echo output of the failure; exit 3\nRUN echo never\n")
    proc = pn(*BUILD, "-t", "broken", str(ctx), check=False)
    assert proc.returncode == 1
    assert "output of the failure" in proc.stdout and "never" not in proc.stdout
    assert proc.stderr.strip() == ("Error: The command '/bin/sh -c echo output of the failure; "
                                   "exit 3' returned a non-zero code: 3")
    assert "broken" not in pn("images").stdout
    nothing_left(pn, root)
    assert "Using cache" in pn(*BUILD, str(ctx), check=False).stdout  # the step before stays


def interrupted_build(pn: Pinnace, ctx: Path) -> list[str]:
    """Start a build, SIGINT it once its RUN prints ``started``; its output lines."""
    proc = pn.popen(*BUILD, str(ctx), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.strip() == "started":
            break
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.monotonic() - start < 30
    return seen


def test_interrupt_during_run_kills_and_removes_the_container(pn: Pinnace, root: Path,
                                                              busybox: str,
                                                              tmp_path: Path) -> None:
    ctx = context(tmp_path, "FROM busybox\nRUN echo cached\n"
                  "RUN echo started && sleep 600\n")
    interrupted_build(pn, ctx)
    nothing_left(pn, root)
    assert " ---> Using cache\n" in interrupted_build(pn, ctx)  # the cache is intact
    nothing_left(pn, root)


def test_huge_build_arg(pn: Pinnace, root: Path, busybox: str, tmp_path: Path) -> None:
    ctx = context(tmp_path, "FROM busybox\nARG BIG\nRUN echo ${#BIG} > /len\n")
    big = "x" * 120_000  # near the kernel's limit for one argument
    pn(*BUILD, "--build-arg", f"BIG={big}", "-t", "big", str(ctx))
    assert run(pn, "big", "cat", "/len") == "120000\n"
    assert "Using cache" in pn(*BUILD, "--build-arg", f"BIG={big}", str(ctx)).stdout
    (ctx / "Dockerfile").write_text("FROM busybox\nARG BIG\nENV TWICE=$BIG$BIG\nRUN true\n")
    proc = pn(*BUILD, "--build-arg", f"BIG={big}", str(ctx), check=False)
    assert proc.returncode == 125
    assert "line 4: RUN: the variable TWICE is 240006 bytes" in proc.stderr
    nothing_left(pn, root)


@pytest.mark.slow
def test_context_of_100k_small_files_in_bounded_memory(pn: Pinnace, root: Path, busybox: str,
                                                       tmp_path: Path) -> None:
    ctx = context(tmp_path, "FROM busybox\nCOPY many /many\n"
                  "RUN find /many -type f | wc -l > /count\n")
    for d in range(100):
        sub = ctx / "many" / f"d{d}"
        sub.mkdir(parents=True)
        for f in range(1000):
            (sub / f"f{f}").write_text(f"{d}-{f}\n")
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *pn.argv(*BUILD, "-t", "many",
                                                                 str(ctx))],
                          capture_output=True, text=True, env=pn.env, timeout=900)
    assert proc.returncode == 0, proc.stderr
    max_rss_kib = int(proc.stderr.strip().splitlines()[-1])
    assert max_rss_kib < 200 * 1024, f"build used {max_rss_kib} KiB"
    assert run(pn, "many", "cat", "/count") == "100000\n"
