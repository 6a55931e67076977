"""Throwaway container images for the local node, made without any registry: a `pause` and a `busybox`.

Both are one-layer images in `docker save` format (what `ctr images import` reads) built from a single
static binary: `pause` from a ten-line C program (`gcc -static`), `busybox` from Debian's busybox-static
(`/bin/busybox`, ci/services.sh) with a link per applet (sh, httpd, wget, nslookup, ...).

They stand in for the project's real images (ci/node/images*) where those are not built yet: the node's
sandbox image must exist locally because nothing can be pulled here.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

PAUSE_IMAGE = "localhost/wp-k8s-service/pause:3.10"
BUSYBOX_IMAGE = "localhost/wp-k8s-service/busybox:node-test"
BUSYBOX = Path("/bin/busybox")

#: Sleeps until SIGINT/SIGTERM, reaps what it adopts (it is PID 1 of the pod's sandbox).
PAUSE_C = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  signal(SIGINT, quit); signal(SIGTERM, quit); signal(SIGCHLD, reap);
  for (;;) pause();
}
"""


class ScratchImageError(RuntimeError):
    pass


def _archive(dest: Path, name: str, files: dict[str, bytes | str], entrypoint: list[str]) -> Path:
    """`files`: path -> content (bytes: an executable file; str: a symlink target)."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.mtime = 0
            if isinstance(content, str):
                info.type = tarfile.SYMTYPE
                info.linkname = content
                tar.addfile(info)
            else:
                info.mode = 0o755
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    layer_bytes = layer.getvalue()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer_bytes).hexdigest()}"]},
    }
    config_bytes = json.dumps(config).encode()
    manifest = [{"Config": "config.json", "RepoTags": [name], "Layers": ["layer.tar"]}]
    with tarfile.open(dest, "w") as out:
        for member, data in (
            ("layer.tar", layer_bytes),
            ("config.json", config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return dest


def pause_archive(dest: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        source, binary = Path(tmp, "pause.c"), Path(tmp, "pause")
        source.write_text(PAUSE_C)
        proc = subprocess.run(
            ["gcc", "-static", "-Os", "-s", "-o", str(binary), str(source)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise ScratchImageError(f"gcc -static of the pause program failed: {proc.stderr.strip()}")
        return _archive(dest, PAUSE_IMAGE, {"pause": binary.read_bytes()}, ["/pause"])


def busybox_archive(dest: Path) -> Path:
    if not BUSYBOX.is_file():
        raise ScratchImageError(f"{BUSYBOX} is missing: install busybox-static (ci/services.sh)")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, timeout=10, check=True
    ).stdout.split()
    files: dict[str, bytes | str] = {"bin/busybox": BUSYBOX.read_bytes()}
    files.update({f"bin/{a}": "busybox" for a in applets if a != "busybox"})
    return _archive(dest, BUSYBOX_IMAGE, files, ["/bin/sh"])
