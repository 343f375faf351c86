# Sourced by .ci/run and scripts/test.sh: one feature set and one target directory for every
# build, lint and test, so burn's crates compile once (each feature set is a full rebuild of
# them: 20+ minutes on 2 cores).
#
# EFFNET_FEATURES: the union of what the tests need — `wgpu` (burn's wgpu backend with fusion
# and autotuning, as users build it; tested on Mesa's lavapipe) and `remote` (multi-node
# training over websockets). The flex CPU backend is always built.
export EFFNET_FEATURES="${EFFNET_FEATURES:-effnet-cli/wgpu,effnet-cli/remote}"
# A target directory outside the clone: a second run on the same machine is warm; a new machine
# builds it from scratch (see README "Development" for both figures).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/effnet-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
