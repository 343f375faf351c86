#!/usr/bin/env bash
# Downloads CIFAR-100 (binary and python versions) and Oxford Flowers-102 from their official
# sites into a folder (default: data/), checks each file's published MD5, and unpacks them:
#
#   data/cifar-100-binary/{train,test}.bin, {fine,coarse}_label_names.txt   dataset = "cifar100"
#   data/cifar-100-python/{train,test,meta}                                 dataset = "cifar100-python"
#   data/flowers102/{jpg/,imagelabels.mat,setid.mat}                        dataset = "flowers102"
#
# Usage: scripts/download_datasets.sh [cifar100|flowers102|all] [DIR]
# Never run by the tests or CI (they build small files in the same formats).
set -euo pipefail

what="${1:-all}"
dir="${2:-data}"
mkdir -p "$dir"

fetch() { # url file md5
    local url="$1" file="$dir/$2" md5="$3"
    if [ -f "$file" ] && echo "$md5  $file" | md5sum -c --status; then
        echo "have $file"
        return
    fi
    echo "downloading $url"
    curl -fL --retry 3 -o "$file.part" "$url"
    if ! echo "$md5  $file.part" | md5sum -c --status; then
        echo "error: $file: MD5 mismatch (expected $md5, got $(md5sum "$file.part" | cut -d' ' -f1))" >&2
        rm -f "$file.part"
        exit 1
    fi
    mv "$file.part" "$file"
}

if [ "$what" = cifar100 ] || [ "$what" = all ]; then
    # MD5s published on https://www.cs.toronto.edu/~kriz/cifar.html
    fetch https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz cifar-100-binary.tar.gz 03b5dce01913d631647c71ecec9e9cb8
    fetch https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz cifar-100-python.tar.gz eb9058c3a382ffc7106e4002c42a8d85
    tar -xzf "$dir/cifar-100-binary.tar.gz" -C "$dir"
    tar -xzf "$dir/cifar-100-python.tar.gz" -C "$dir"
fi

if [ "$what" = flowers102 ] || [ "$what" = all ]; then
    # MD5s as listed by torchvision.datasets.Flowers102.
    base=https://www.robots.ox.ac.uk/~vgg/data/flowers/102
    mkdir -p "$dir/flowers102"
    fetch "$base/102flowers.tgz" flowers102/102flowers.tgz 52808999861908f626f3c1f4e79d11fa
    fetch "$base/imagelabels.mat" flowers102/imagelabels.mat e0620be6f572b9609742df49c70aed4d
    fetch "$base/setid.mat" flowers102/setid.mat a5357ecc9cb78c4bef273ce3793fc85c
    tar -xzf "$dir/flowers102/102flowers.tgz" -C "$dir/flowers102"
fi

echo "done; check with: effnet data check --dataset cifar100 --path $dir/cifar-100-binary"
