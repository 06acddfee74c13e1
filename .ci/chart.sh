#!/usr/bin/env bash
# Proves the Helm chart in helm/onboarding-gateway. For every scenario in its ci/*-values.yaml: `helm lint
# --strict`; `helm template`, validated strictly against the Kubernetes API of the chart's oldest supported
# version and of a current one; the rendered ConfigMap accepted by the gateway's own configuration check
# (`onboarding-gateway config --skip-files`, the same binary the tests built). Then, over every scenario at
# once: checkov finds nothing the chart does not skip with a written reason; the ServiceMonitor and
# PrometheusRule match the fields the chart writes; the alerts are the documented ones; every gateway setting is
# exposed, set or deliberately refused by the chart. Finally every values file in ci/refused/ is refused with
# the message it expects, and so are the chart's defaults (they lack the image and the Secrets).
#
# Installs its tools into .ci/cache: helm (.ci/get-helm) and a Python venv with kubernetes-validate and
# checkov. GATEWAY_BIN names the gateway binary (default target/debug/onboarding-gateway, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cache="$root/.ci/cache"
chart=helm/onboarding-gateway
out="$cache/chart-out"
# The chart's kubeVersion floor, and the current Kubernetes release.
kube_versions=(1.30.0 1.36.0)
namespace=onboarding
tools="kubernetes-validate==1.37.0 checkov==3.3.30"

step() { printf '\n--> %s\n' "$*"; }
passed=0
pass() { passed=$((passed + 1)); printf '  ok  %s\n' "$*"; }
die() { printf '  FAILED  %s\n' "$*" >&2; exit 1; }

step "tools"
helm="$(.ci/get-helm)"
export HELM_CACHE_HOME="$cache/helm-home/cache" HELM_CONFIG_HOME="$cache/helm-home/config" \
  HELM_DATA_HOME="$cache/helm-home/data"
venv="$cache/chart-venv"
if [[ "$(cat "$venv/.installed" 2>/dev/null)" != "$tools" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086 # one argument per requirement
  "$venv/bin/pip" install --quiet --disable-pip-version-check $tools
  echo "$tools" >"$venv/.installed"
fi
python="$venv/bin/python"
gateway="${GATEWAY_BIN:-target/debug/onboarding-gateway}"
if [[ ! -x "$gateway" ]]; then
  cargo build --locked --bin onboarding-gateway
  [[ -x "$gateway" ]] || die "no gateway binary at $gateway"
fi
echo "  helm $("$helm" version --short), kubernetes-validate $("$venv/bin/kubernetes-validate" --version), checkov $("$venv/bin/checkov" --version)"

rm -rf "$out"
mkdir -p "$out"
scenarios=()
for values in "$chart"/ci/*-values.yaml; do
  name="$(basename "$values" -values.yaml)"
  scenarios+=("$name")
  step "scenario $name ($values)"
  "$helm" lint --strict --quiet "$chart" -f "$values" >"$out/$name.lint" 2>&1 || { cat "$out/$name.lint"; die "helm lint"; }
  pass "helm lint --strict"
  # Each scenario is its own release, so that no policy scan mistakes one release's pods for another's.
  "$helm" template "$name" "$chart" --namespace "$namespace" -f "$values" >"$out/$name.yaml"
  pass "helm template: $(grep -c '^kind: ' "$out/$name.yaml") resources ($(grep '^kind: ' "$out/$name.yaml" | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $3; sep=", "}'))"
  for version in "${kube_versions[@]}"; do
    # --no-warn: the Prometheus Operator's kinds have no schema there; `checks.py crds` checks them below.
    "$venv/bin/kubernetes-validate" --strict --quiet --no-warn -k "$version" "$out/$name.yaml" || die "kubernetes-validate $version"
    pass "kubernetes-validate --strict -k $version"
  done
  "$python" helm/checks.py config "$out/$name.yaml" "$out/$name.toml"
  mode=()
  if grep -q -- '- --sandbox$' "$out/$name.yaml"; then mode=(--sandbox); fi
  # A clean environment: ONBOARDING_GATEWAY_* variables would change what is checked.
  env -i PATH="$PATH" "$gateway" --config "$out/$name.toml" config "${mode[@]}" --skip-files >"$out/$name.config" 2>&1 \
    || { cat "$out/$name.config"; die "the gateway refuses the rendered configuration"; }
  pass "onboarding-gateway config ${mode[*]:+${mode[*]} }--skip-files accepts the rendered gateway.toml"
done

step "policy scan: checkov on the ${#scenarios[@]} scenarios"
# --skip-download: the checks shipped with checkov only, nothing fetched. It fails on any finding that the
# chart does not skip (checkov.io/skipN annotations); `checks.py skips` lists the skips and their reasons.
# CKV_IGNORE_HIDDEN_DIRECTORIES: the rendered files are under .ci/, which checkov would otherwise pass over.
CKV_IGNORE_HIDDEN_DIRECTORIES=false "$venv/bin/checkov" --skip-download --framework kubernetes \
  --directory "$out" --output cli --compact >"$out/checkov.txt" 2>&1 \
  || { grep -v 'PASSED' "$out/checkov.txt"; die "checkov"; }
summary="$(grep -o 'Passed checks: [0-9]*, Failed checks: [0-9]*, Skipped checks: [0-9]*' "$out/checkov.txt" || true)"
[[ "$summary" =~ ^Passed\ checks:\ [1-9][0-9]*,\ Failed\ checks:\ 0, ]] || { cat "$out/checkov.txt"; die "checkov scanned nothing"; }
pass "checkov: $summary"
"$python" helm/checks.py skips "$out"/*.yaml
pass "every skip has its reason"

step "what kubernetes-validate cannot check"
"$python" helm/checks.py crds "$out"/*.yaml
pass "ServiceMonitor and PrometheusRule"
rules=0
for name in "${scenarios[@]}"; do
  if grep -q '^kind: PrometheusRule$' "$out/$name.yaml"; then
    "$python" helm/checks.py alerts README.md "$out/$name.yaml"
    rules=$((rules + 1))
  fi
done
((rules > 0)) || die "no scenario renders the PrometheusRule"
pass "alerts as documented"
"$python" helm/checks.py keys src/config/defaults.toml "$chart/values.schema.json" "$chart/values.yaml" "$out"/*.toml
pass "every gateway setting is exposed, set or refused; values.yaml and the schema agree"

step "values the chart must refuse ($chart/ci/refused)"
for refused in "$chart"/ci/refused/*.yaml; do
  base="$(sed -n 's/^# base: //p' "$refused")"
  [[ -n "$base" ]] || die "$refused names no '# base:' scenario"
  if "$helm" template refused "$chart" -f "$chart/ci/$base" -f "$refused" >/dev/null 2>"$out/refused.err"; then
    die "$refused was accepted"
  fi
  while IFS= read -r expected; do
    grep -qF -- "$expected" "$out/refused.err" || { cat "$out/refused.err"; die "$refused: no '$expected'"; }
  done < <(sed -n 's/^# expect: //p' "$refused")
  grep -q '^# expect: ' "$refused" || die "$refused expects nothing"
  pass "$(basename "$refused" .yaml): $(sed -n 's/^# Refused: //p' "$refused")"
done
if "$helm" template defaults "$chart" >/dev/null 2>"$out/refused.err"; then
  die "the chart's defaults were accepted without an image or Secrets"
fi
for expected in 'image.repository: String length must be greater than or equal to 1' \
  'secrets.webhookTokens.existingSecret: String length must be greater than or equal to 1'; do
  grep -qF -- "$expected" "$out/refused.err" || { cat "$out/refused.err"; die "the defaults: no '$expected'"; }
done
pass "the defaults alone: refused until the image and the Secrets are named"

printf '\nchart: %d passed, 0 failed\n' "$passed"
