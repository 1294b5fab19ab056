#!/usr/bin/env python3
"""Builds the spire-rs container image as an OCI archive without a container engine or a
registry: the layout of deploy/Containerfile (binaries in /opt/spire/bin) from binaries that
are already built, with the shared libraries they link (found with ldd) at the same paths, the
system's CA certificates and a static busybox for a shell.

  deploy/build-image.py OUT.tar BIN_DIR [NAME]     # NAME default docker.io/library/spire-rs:dev

BIN_DIR holds spire-server and/or spire-agent (ours, or reference SPIRE's: the same
manifests run either). Debug information is stripped from the copies when objcopy is
available. Import with `ctr -n k8s.io images import OUT.tar` (or `docker load`/`podman load`).
"""
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def libraries(binary):
    """Absolute paths of the shared objects `binary` loads (empty for a static binary)."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if m and os.path.exists(m.group(1)):
            libs.append(m.group(1))
    return libs


def stripped(path):
    if shutil.which("objcopy") is None:
        with open(path, "rb") as f:
            return f.read()
    with tempfile.NamedTemporaryFile() as t:
        subprocess.run(["objcopy", "--strip-debug", path, t.name], check=True)
        with open(t.name, "rb") as f:
            return f.read()


def rootfs(bin_dir):
    buf = io.BytesIO()
    seen = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name, kind=tarfile.DIRTYPE, mode=0o755, data=b"", link=""):
            name = name.lstrip("/")
            parts = name.split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in seen:
                    seen.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                    tar.addfile(info)
            if name in seen:
                return
            seen.add(name)
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname = kind, mode, 0, link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        for d in ("dev", "proc", "sys", "run", "var", "root"):
            add(d)
        add("tmp", mode=0o1777)
        busybox = "/usr/bin/busybox"
        if os.access(busybox, os.X_OK):
            with open(busybox, "rb") as f:
                add("bin/busybox", tarfile.REGTYPE, 0o755, f.read())
            for a in ("sh", "ls", "cat", "sleep"):
                add("bin/" + a, tarfile.SYMTYPE, 0o777, link="busybox")
        libs = set()
        found = False
        for name in ("spire-server", "spire-agent"):
            path = os.path.join(bin_dir, name)
            if not os.access(path, os.X_OK):
                continue
            found = True
            add("opt/spire/bin/" + name, tarfile.REGTYPE, 0o755, stripped(path))
            libs.update(libraries(path))
        if not found:
            sys.exit(f"no spire-server or spire-agent in {bin_dir}")
        for lib in sorted(libs):
            real = os.path.realpath(lib)
            with open(real, "rb") as f:
                add(real, tarfile.REGTYPE, 0o755, f.read())
            if real != lib:
                add(lib, tarfile.SYMTYPE, 0o777, link=real)
        ca = "/etc/ssl/certs/ca-certificates.crt"
        if os.path.exists(ca):
            with open(ca, "rb") as f:
                add(ca, tarfile.REGTYPE, 0o644, f.read())
        add("etc/passwd", tarfile.REGTYPE, 0o644, b"root:x:0:0:root:/root:/bin/sh\n")
        add("etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\n")
    return buf.getvalue()


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    out, bin_dir = sys.argv[1], sys.argv[2]
    name = sys.argv[3] if len(sys.argv) == 4 else "docker.io/library/spire-rs:dev"
    arch = ARCH.get(platform.machine(), platform.machine())
    raw = rootfs(bin_dir)
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=1) as g:
        g.write(raw)
    gz = gz.getvalue()
    plat = {"architecture": arch, "os": "linux"}
    config = json.dumps({
        **plat,
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Entrypoint": ["/opt/spire/bin/spire-server"],
            "Cmd": ["run", "-config", "/run/spire/config/server.conf"],
            "Env": ["PATH=/opt/spire/bin:/bin"],
            "WorkingDir": "/opt/spire",
        },
        "rootfs": {"type": "layers", "diff_ids": [sha(raw)]},
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(gz), "size": len(gz)}],
    }, sort_keys=True).encode()
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha(manifest), "size": len(manifest), "platform": plat,
            "annotations": {"io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]},
        }],
    }, sort_keys=True).encode()
    files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(), "index.json": index}
    for data in (config, manifest, gz):
        files["blobs/sha256/" + sha(data).split(":", 1)[1]] = data
    with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for fname, data in files.items():
            info = tarfile.TarInfo(fname)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    print(out)


if __name__ == "__main__":
    main()
