#!/usr/bin/env python3
"""Builds the test node's container images without docker or a registry.

Writes one OCI image-layout tar holding two images that share a single layer (a busybox-static
rootfs: /bin/busybox plus a symlink per applet):

  docker.io/local/pause:1   the pod sandbox image; sh loop that exits 0 on SIGTERM
  docker.io/local/app:1     the default workload image; same loop, so pods stop at once

The archive is cached under CACHE_DIR keyed by the sha256 of busybox, this script and the
architecture, and is byte-for-byte reproducible (fixed mtimes, gzip without a timestamp), so a
cache hit costs nothing and a miss takes well under a second. Import it with
`ctr -n k8s.io images import --snapshotter S FILE` (names come from the index annotations).

Usage: images.py CACHE_DIR [BUSYBOX]   # prints the archive's path on stdout
"""
import gzip
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile

# PID 1 ignores signals it has no handler for, so the loop must trap TERM itself; waiting on a
# background sleep lets the trap run at once instead of after the current sleep ends.
LOOP = 'trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done'
IMAGES = {
    "docker.io/local/pause:1": ["/bin/sh", "-c", LOOP],
    "docker.io/local/app:1": ["/bin/sh", "-c", LOOP],
}
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(busybox):
    """An uncompressed rootfs tar: deterministic, so its diff_id is stable."""
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name, kind=tarfile.DIRTYPE, mode=0o755, data=b"", link=""):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname = kind, mode, 0, link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        for d in ("bin", "dev", "etc", "proc", "sys", "root", "var", "usr"):
            add(d)
        add("tmp", mode=0o1777)
        with open(busybox, "rb") as f:
            add("bin/busybox", tarfile.REGTYPE, 0o755, f.read())
        for a in sorted(set(applets) - {"busybox"}):
            if "/" not in a:
                add("bin/" + a, tarfile.SYMTYPE, 0o777, link="busybox")
        add("etc/passwd", tarfile.REGTYPE, 0o644, b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        add("etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\nnogroup:x:65534:\n")
    return buf.getvalue()


def build(busybox, arch, out):
    raw = layer(busybox)
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=6) as g:
        g.write(raw)
    gz = gz.getvalue()
    blobs = {sha(gz): gz}
    plat = {"architecture": arch, "os": "linux"}
    index = []
    for name, cmd in IMAGES.items():
        config = json.dumps({
            **plat,
            "created": "1970-01-01T00:00:00Z",
            "config": {"Cmd": cmd, "Env": ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"], "WorkingDir": "/",
                       "Labels": {"spire-rs.image": name}},  # also keeps the two image IDs distinct
            "rootfs": {"type": "layers", "diff_ids": [sha(raw)]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "conformance/k8s/images.py"}],
        }, sort_keys=True).encode()
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(gz), "size": len(gz)}],
        }, sort_keys=True).encode()
        blobs[sha(config)] = config
        blobs[sha(manifest)] = manifest
        index.append({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha(manifest), "size": len(manifest), "platform": plat,
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]},
        })
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                  "manifests": index}, sort_keys=True).encode(),
    }
    for digest, data in sorted(blobs.items()):
        files["blobs/sha256/" + digest.split(":", 1)[1]] = data
    with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    cache = sys.argv[1]
    busybox = sys.argv[2] if len(sys.argv) == 3 else "/usr/bin/busybox"
    if not os.access(busybox, os.X_OK):
        sys.exit(f"{busybox} not found: install Debian busybox-static (a static busybox is needed in the image)")
    arch = ARCH.get(platform.machine(), platform.machine())
    h = hashlib.sha256(arch.encode())
    for path in (busybox, os.path.abspath(__file__)):
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    os.makedirs(cache, exist_ok=True)
    out = os.path.join(cache, f"images-{h.hexdigest()[:16]}.tar")
    if not os.path.exists(out):
        fd, tmp = tempfile.mkstemp(dir=cache, suffix=".tmp")
        os.close(fd)
        try:
            build(busybox, arch, tmp)
            os.chmod(tmp, 0o644)
            os.rename(tmp, out)  # atomic: concurrent builders write identical bytes
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    print(out)


if __name__ == "__main__":
    main()
