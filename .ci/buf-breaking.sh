#!/usr/bin/env bash
# Fails when the API in proto/ breaks compatibility with the published one: `buf breaking` (rules: the
# `breaking` section of proto/buf.yaml, FILE) against the committed baseline image
# proto/baseline/onboarding-v1.binpb. Exits 0 when compatible, buf's 100 when it finds a breaking change,
# anything else non-zero when it could not check.
#
# Usage: .ci/buf-breaking.sh [MODULE_DIR]   (default: proto; .ci/buf-breaking-selftest.sh passes copies)
# buf: $BUF, else the one .ci/run installs into .ci/cache/node (@bufbuild/buf 1.75.0, the version that built
# the baseline).
#
# Updating the baseline, deliberately, when the API changes (build it with buf 1.75.0, as CI checks with it):
#     .ci/cache/node/node_modules/.bin/buf build proto -o proto/baseline/onboarding-v1.binpb
# and commit the image in the same commit as the .proto change it records.
#   * A compatible change (a new field, message or RPC) passes as it is; rebuild the baseline when the change
#     is released, so that later changes are checked against what callers now have.
#   * A breaking change fails here by design. It belongs in a new package (connectpay.onboarding.v2, with a
#     baseline of its own), not in v1. Rebuilding the v1 baseline to make this check pass is a decision to
#     break v1's callers: only for a change no caller has received yet, said so in the commit message.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
module="${1:-proto}"
baseline="$root/proto/baseline/onboarding-v1.binpb"
buf="${BUF:-$root/.ci/cache/node/node_modules/.bin/buf}"
if [[ ! -x "$buf" ]]; then
  echo "buf-breaking: no buf at $buf (run .ci/run, which installs @bufbuild/buf 1.75.0, or set BUF)" >&2
  exit 2
fi
if [[ "$("$buf" --version)" != "1.75.0" ]]; then
  echo "buf-breaking: warning: buf $("$buf" --version), the baseline was built with 1.75.0" >&2
fi
[[ -f "$baseline" ]] || { echo "buf-breaking: no baseline at $baseline" >&2; exit 2; }
"$buf" breaking "$module" --against "$baseline"
echo "buf-breaking: $module is compatible with proto/baseline/onboarding-v1.binpb"
