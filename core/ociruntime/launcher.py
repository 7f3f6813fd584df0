"""Write a fast launcher for ``pinnace-runtime``: ``python -m pinnace.ociruntime.launcher OUT``.

The runtime starts for every call its callers make (several per container), so its
script runs the interpreter with ``-IS`` (one shebang argument): no site processing, no
``.pth`` files, no environment. The paths that processing would have added (this installation's
site-packages and editable source directories) are written into the script instead.
"""

from __future__ import annotations

import os
import sys


def launcher_text(python: str = "/usr/bin/python3") -> str:
    """The script: a fixed interpreter, the import path entries this interpreter has
    beyond that one's bare ``-I -S`` path, then main."""
    import json
    import subprocess

    bare = json.loads(subprocess.run([python, "-I", "-S", "-c",
                                      "import sys, json; print(json.dumps(sys.path))"],
                                     capture_output=True, text=True, check=True).stdout)
    paths = [p for p in sys.path[1:] if p and p not in bare]  # [0]: the current directory
    return (f"#!{python} -IS\n"
            "import sys\n"
            f"sys.path[:0] = {paths!r}\n"
            "from pinnace.ociruntime.cli import main\n"
            "main()\n")


def main() -> None:
    """Write the launcher to the path given as the only argument."""
    out = sys.argv[1]
    tmp = f"{out}.tmp"
    with open(tmp, "w") as f:
        f.write(launcher_text())
    os.chmod(tmp, 0o755)
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
