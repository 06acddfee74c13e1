#!/usr/bin/env bash
# Proves that .ci/buf-breaking.sh catches a breaking change: on copies of proto/ in a temporary directory,
# the unchanged copy must pass, a compatible change (a new field) must pass, and a breaking change (a field of
# SubmitIdvSessionRequest removed, another renumbered) must fail with buf's "breaking change found" (100),
# naming both. The baseline and the rules are the real ones. Run by .ci/run after buf lint.
set -euo pipefail
cd "$(dirname "$0")/.."
check=$PWD/.ci/buf-breaking.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "buf-breaking-selftest: $*" >&2; exit 1; }
file=connectpay/onboarding/v1/onboarding.proto

cp -R proto "$tmp/unchanged"
"$check" "$tmp/unchanged" || fail "the unchanged API did not pass"

cp -R proto "$tmp/compatible"
sed -i 's/^  string request_id = 4;$/&\n  string note = 5;/' "$tmp/compatible/$file"
grep -q '^  string note = 5;$' "$tmp/compatible/$file" || fail "could not add a field"
"$check" "$tmp/compatible" || fail "a compatible change (a new field) did not pass"

cp -R proto "$tmp/broken"
sed -i -e '/^  string request_id = 4;$/d' -e 's/^  string provider_id = 3;$/  string provider_id = 4;/' \
  "$tmp/broken/$file"
grep -q '^  string provider_id = 4;$' "$tmp/broken/$file" || fail "could not renumber provider_id"
! grep -q '^  string request_id = 4;$' "$tmp/broken/$file" || fail "could not remove request_id"
status=0
"$check" "$tmp/broken" >"$tmp/broken.out" 2>&1 || status=$?
cat "$tmp/broken.out"
[[ $status -eq 100 ]] || fail "a breaking change was not reported as one (exit $status, expected 100)"
for name in '"SubmitIdvSessionRequest"' '"request_id"' '"provider_id"'; do
  grep -q "$name" "$tmp/broken.out" || fail "the breaking change was reported without naming $name"
done
echo "buf-breaking-selftest: unchanged and compatible copies pass, the breaking change fails"
