"""Checks of the Helm chart that need more than helm, kubernetes-validate and checkov; run by .ci/chart.sh.

    checks.py config RENDERED.yaml OUT.toml    write the gateway's ConfigMap (not the hook's copy) to OUT.toml
    checks.py keys DEFAULTS.toml SCHEMA.json VALUES.yaml RENDERED.toml...
                                               every gateway setting is exposed by the chart, set by it, or
                                               refused on purpose; values.yaml and the schema name the same
                                               settings
    checks.py alerts README.md RENDERED.yaml   the PrometheusRule's alerts are the documented ones
    checks.py crds RENDERED.yaml...            ServiceMonitor and PrometheusRule against schemas of the fields
                                               the chart writes (kubernetes-validate has no schema for them)
    checks.py skips RENDERED.yaml...           every checkov skip carries a reason; prints them

Each prints what it checked and exits non-zero with the reasons when a check fails.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib

import jsonschema
import yaml

# Settings the chart writes itself, from its own values (ports, Secrets, store, shutdown, proxy).
OWNED = {
    "grpc.listen", "grpc.tls.cert_file", "grpc.tls.key_file", "grpc.tls.client_ca_file",
    "admin.listen", "health.listen", "webhook.listen", "webhook.tokens_file",
    "shutdown.drain_delay", "shutdown.grace_period",
    "store.url", "store.url_file", "store.key_file", "store.migrate_at_start",
    "connectpay.client_secret_file", "connectpay.auth_code_file",
    "connectpay.tls.client_cert_file", "connectpay.tls.client_key_file", "connectpay.tls.ca_bundle_file",
    "connectpay.proxy_url", "connectpay.proxy_url_file", "connectpay.no_proxy",
    "auth.jwt.jwks_file",
}
# Inline secrets: a ConfigMap is no place for them, so the chart takes them only as Secrets (the *_file keys).
REFUSED = {"connectpay.client_secret", "connectpay.auth_code", "store.key", "webhook.tokens"}


def fail(problems: list[str]) -> None:
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)
    sys.exit(1)


def documents(path: str) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def config(rendered: str, out: str) -> None:
    maps = [d for d in documents(rendered) if d["kind"] == "ConfigMap" and "gateway.toml" in d.get("data", {})
            and "helm.sh/hook" not in (d["metadata"].get("annotations") or {})]
    if len(maps) != 1:
        fail([f"{rendered}: expected one gateway ConfigMap, found {len(maps)}"])
    with open(out, "w") as f:
        f.write(maps[0]["data"]["gateway.toml"])


def leaf_keys(table: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in table.items():
        if isinstance(value, dict) and value:
            keys |= leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


def defaults_keys(path: str) -> set[str]:
    """The keys of defaults.toml, those shown commented out (optional settings) included."""
    with open(path, "rb") as f:
        keys = leaf_keys(tomllib.load(f))
    section = ""
    with open(path) as f:
        for line in f:
            header = re.match(r"^\[([a-z_.]+)\]", line)
            if header:
                section = header.group(1) + "."
            commented = re.match(r"^#\s?([a-z_]+) = ", line)
            if commented:
                keys.add(section + commented.group(1))
    # A table given as a whole (auth.permissions) is one setting, not a section of others.
    return {k for k in keys if not any(other.startswith(k + ".") for other in keys)}


def schema_keys(schema: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, sub in schema.get("properties", {}).items():
        if sub.get("type") == "object" and "properties" in sub:
            keys |= schema_keys(sub, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


def values_paths(values: dict, schema: dict, prefix: str = "") -> tuple[set[str], set[str]]:
    """Settings the schema describes (below free-form maps: no) and those values.yaml sets."""
    described, present = set(), set()
    for key, sub in schema.get("properties", {}).items():
        path = prefix + key
        if path in ("global", "config"):
            continue
        described.add(path)
        if isinstance(values, dict) and key in values:
            present.add(path)
            # Below an empty map (affinity: {}) are pod-spec fields, not the chart's settings.
            if sub.get("type") == "object" and "properties" in sub and values[key]:
                d, p = values_paths(values[key], sub, path + ".")
                described |= d
                present |= p
    return described, present


def keys(defaults: str, schema_path: str, values_path: str, rendered: list[str]) -> None:
    with open(schema_path) as f:
        schema = json.load(f)
    gateway = defaults_keys(defaults)
    exposed = schema_keys(schema["properties"]["config"])
    problems = []
    for key in sorted(gateway - exposed - OWNED - REFUSED):
        problems.append(f"{key}: a gateway setting the chart neither exposes (config.*) nor sets")
    for key in sorted(exposed - gateway):
        problems.append(f"config.{key}: the schema accepts a key the gateway does not have")
    for key in sorted((OWNED | REFUSED) - gateway):
        problems.append(f"{key}: listed as set or refused by the chart, but the gateway has no such key")
    for key in sorted(exposed & (OWNED | REFUSED)):
        problems.append(f"config.{key}: set or refused by the chart, yet accepted in config")
    for path in rendered:
        with open(path, "rb") as f:
            written = leaf_keys(tomllib.load(f))
        # A map setting (auth.permissions) is written as a table of its entries.
        written = {k for k in written if not any(k.startswith(e + ".") for e in exposed)}
        for key in sorted(written - exposed - OWNED):
            problems.append(f"{path}: {key} is written, but is neither a config.* value nor a setting the chart owns")
    with open(values_path) as f:
        values = yaml.safe_load(f)
    described, present = values_paths(values, schema)
    for path in sorted(described - present):
        problems.append(f"{path}: described by values.schema.json, missing from values.yaml")
    if problems:
        fail(problems)
    print(f"keys: {len(gateway)} gateway settings: {len(gateway & exposed)} in config.*, "
          f"{len(gateway & OWNED)} set by the chart, {len(gateway & REFUSED)} inline secrets refused; "
          f"{len(present)} chart values in values.yaml and the schema")


def documented_alerts(readme: str) -> dict[str, dict]:
    with open(readme) as f:
        text = f.read()
    block = re.search(r"Suggested alerts:\s*```yaml\n(.*?)```", text, re.S)
    if not block:
        fail([f"{readme}: no 'Suggested alerts' yaml block"])
    # The block's comments sit inside a multi-line expression, where YAML allows none: drop them first.
    lines = [re.sub(r"\s+#.*$", "", line) for line in block.group(1).splitlines()]
    return {a["alert"]: a for a in yaml.safe_load("\n".join(lines))}


def normalise(expr: str) -> str:
    return " ".join(str(expr).split())


def alerts(readme: str, rendered: str) -> None:
    documented = documented_alerts(readme)
    rules = [d for d in documents(rendered) if d["kind"] == "PrometheusRule"]
    if len(rules) != 1:
        fail([f"{rendered}: expected one PrometheusRule, found {len(rules)}"])
    chart = {r["alert"]: r for g in rules[0]["spec"]["groups"] for r in g["rules"]}
    problems = []
    for name in sorted(set(documented) | set(chart)):
        if name not in chart:
            problems.append(f"{name}: documented, missing from the PrometheusRule")
        elif name not in documented:
            problems.append(f"{name}: in the PrometheusRule, not documented")
        else:
            for field in ("expr", "for"):
                want, got = documented[name].get(field), chart[name].get(field)
                if normalise(want) != normalise(got):
                    problems.append(f"{name}.{field}: documented {want!r}, the chart says {got!r}")
    if problems:
        fail(problems)
    print(f"alerts: the PrometheusRule has the {len(chart)} documented alerts, expressions and durations")


PROM_DURATION = {"type": "string",
                 "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {"type": "object", "required": ["name", "namespace"], "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                           "labels": STRING_MAP, "annotations": STRING_MAP}}
LABEL_SELECTOR = {"type": "object", "additionalProperties": False,
                  "properties": {"matchLabels": STRING_MAP, "matchExpressions": {"type": "array"}}}
# The fields of the Prometheus Operator's monitoring.coreos.com/v1 kinds that the chart writes, strictly.
CRD_SCHEMAS = {
    "ServiceMonitor": {
        "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"},
            "metadata": METADATA,
            "spec": {"type": "object", "additionalProperties": False, "required": ["selector", "endpoints"],
                     "properties": {
                         "selector": LABEL_SELECTOR,
                         "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
                             "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}},
                         "endpoints": {"type": "array", "minItems": 1, "items": {
                             "type": "object", "additionalProperties": False, "required": ["port"],
                             "properties": {
                                 "port": {"type": "string"}, "path": {"type": "string", "pattern": "^/"},
                                 "scheme": {"enum": ["http", "https"]},
                                 "interval": PROM_DURATION, "scrapeTimeout": PROM_DURATION,
                                 "relabelings": {"type": "array", "items": {"type": "object"}},
                                 "metricRelabelings": {"type": "array", "items": {"type": "object"}}}}}}}}},
    "PrometheusRule": {
        "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"},
            "metadata": METADATA,
            "spec": {"type": "object", "additionalProperties": False, "required": ["groups"], "properties": {
                "groups": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False, "required": ["name", "rules"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "rules": {"type": "array", "minItems": 1, "items": {
                            "type": "object", "additionalProperties": False, "required": ["alert", "expr"],
                            "properties": {
                                "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                "expr": {"type": "string", "minLength": 1},
                                "for": PROM_DURATION,
                                "labels": STRING_MAP, "annotations": STRING_MAP}}}}}}}}}},
}


def crds(rendered: list[str]) -> None:
    problems, checked = [], 0
    for path in rendered:
        for doc in documents(path):
            schema = CRD_SCHEMAS.get(doc["kind"]) if doc["apiVersion"].startswith("monitoring.coreos.com/") else None
            if schema is None:
                continue
            checked += 1
            for error in jsonschema.Draft7Validator(schema).iter_errors(doc):
                where = ".".join(str(p) for p in error.absolute_path)
                problems.append(f"{path}: {doc['kind']} {where}: {error.message}")
    if problems:
        fail(problems)
    print(f"crds: {checked} ServiceMonitor/PrometheusRule resources match the fields the chart writes")


def skips(rendered: list[str]) -> None:
    problems, found = [], {}
    for path in rendered:
        for doc in documents(path):
            for key, value in (doc["metadata"].get("annotations") or {}).items():
                if not key.startswith("checkov.io/skip"):
                    continue
                check, _, reason = value.partition("=")
                if not re.fullmatch(r"CKV2?_K8S_[0-9]+", check) or not reason.strip() or "=" in reason:
                    problems.append(f"{path}: {doc['kind']} {doc['metadata']['name']}: {key}: {value!r} "
                                    "is not CHECK_ID=reason (a reason without '=')")
                found.setdefault((check, reason), set()).add(doc["kind"])
    if problems:
        fail(problems)
    print(f"skips: {len(found)} accepted findings, each with its reason:")
    for (check, reason), kinds in sorted(found.items()):
        print(f"  {check} ({', '.join(sorted(kinds))}): {reason}")


def main(argv: list[str]) -> None:
    command, args = argv[1], argv[2:]
    if command == "config":
        config(*args)
    elif command == "keys":
        keys(args[0], args[1], args[2], args[3:])
    elif command == "alerts":
        alerts(*args)
    elif command == "crds":
        crds(args)
    elif command == "skips":
        skips(args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
