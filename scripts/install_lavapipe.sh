#!/usr/bin/env bash
# Mesa's lavapipe (Vulkan on the CPU) and the Vulkan loader, for the wgpu tests on a machine
# without a GPU. Installs with apt only when the driver is missing.
set -euo pipefail
if ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1 && ldconfig -p | grep -q 'libvulkan\.so\.1'; then
    exit 0
fi
sudo_=""
[ "$(id -u)" -ne 0 ] && sudo_="sudo"
$sudo_ apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
