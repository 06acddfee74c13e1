"""Checks a smoke run of the benchmark harness: every scenario ran and measured something.

Speed is not judged here (CI machines vary, and debug builds are slow); BENCHMARKS.md holds real runs.
usage: python3 .ci/bench-smoke.py RESULTS.json
"""

import json
import sys

EXPECTED = {
    ("unary", "SQLite"),
    ("fanout", "SQLite"),
    ("fanout", "PostgreSQL"),
    ("watchers", "SQLite"),
    ("ingest", "SQLite"),
    ("ingest", "PostgreSQL"),
}


def main(path: str) -> int:
    report = json.load(open(path))
    problems = []
    if not report.get("smoke"):
        problems.append("not a smoke run")
    if not report["machine"].get("idle"):
        problems.append("how idle CPUs wait (cpuidle, halt polling) is not recorded")
    ran = {(r["scenario"], r["store"]) for r in report["results"]}
    for missing in sorted(EXPECTED - ran):
        problems.append(f"scenario {missing[0]} ({missing[1]}) produced no result")
    for result in report["results"]:
        name = f'{result["scenario"]} ({result["store"]})'
        if not result["phases"]:
            problems.append(f"{name}: no phase")
        for phase in result["phases"]:
            if phase["seconds"] <= 0:
                problems.append(f'{name} / {phase["name"]}: took no time')
            for what, latency in phase["latencies"]:
                if latency["requests"] - latency["errors"] <= 0:
                    problems.append(f'{name} / {phase["name"]}: no successful "{what}"')
            if result["scenario"] != "watchers" and phase["achieved_per_s"] <= 0:
                problems.append(f'{name} / {phase["name"]}: nothing achieved')
        if result["store"] == "PostgreSQL" and not result.get("database_server"):
            problems.append(f"{name}: where the PostgreSQL server ran is not recorded")
        stolen = result.get("stolen_share")
        if not isinstance(stolen, (int, float)) or not 0 <= stolen <= 1:
            problems.append(f"{name}: the CPU time the host took (steal) is not recorded")
        for process in result["processes"]:
            if process["peak_rss_mib"] <= 0:
                problems.append(f'{name}: no memory reading for {process["name"]}')
    for problem in problems:
        print(f"bench smoke: {problem}")
    if problems:
        return 1
    phases = sum(len(r["phases"]) for r in report["results"])
    print(f"bench smoke: {len(report['results'])} scenario runs, {phases} phases, all measured")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
