#!/usr/bin/env python3
"""Counts the instructions the gateway spends on one GetApplication, with valgrind's callgrind.

Wall-clock numbers on a shared virtual machine move from run to run and from machine to machine (see
BENCHMARKS.md); instruction counts do not: the same binaries and inputs give the same count whatever else
the machine is doing. This is how a change to the unary path is judged before it is timed.

It starts the sandbox and the gateway (the latter under callgrind, SQLite store, callers unauthenticated on
loopback, as the harness configures it), creates 50 applications, warms up with 300 calls, zeroes the
counters, makes CALLS sequential GetApplication calls (2 ms apart, so that each finds the gateway idle, as
at a light load), dumps the counters and prints the instructions per call and the functions that spent the
most of them themselves. The callgrind file is kept for `callgrind_annotate`.

    python3 bench/instructions.py [--bin-dir target/release] [--calls 2000] [--out DIR]

Needs valgrind and the Python packages grpcio and grpcio-tools (`pip install grpcio grpcio-tools`).
"""

import argparse
import collections
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT_ID, CLIENT_SECRET, AUTH_CODE = "bench-client", "bench-secret", "bench-gateway-code"
WEBHOOK_TOKEN = "bench-webhook-token-0123456789abcdef"
STORE_KEY = "YmVuY2htYXJrLW9ubHktc3RvcmUta2V5LTMyLWJ5dGU="


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stubs(out):
    """Generates the API's Python stubs from proto/ into `out` and makes them importable."""
    import grpc_tools
    from grpc_tools import protoc

    proto = os.path.join(ROOT, "proto")
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    os.makedirs(out, exist_ok=True)
    files = [
        os.path.join(proto, "connectpay/onboarding/v1", f)
        for f in ("application.proto", "kyc.proto", "onboarding.proto")
    ]
    if protoc.main(["protoc", f"-I{proto}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}", *files]):
        sys.exit("generating the Python stubs failed")
    sys.path.insert(0, out)


def gateway_config(work, ports, sandbox):
    grpc, admin, webhook = ports
    return f"""
[grpc]
listen = "127.0.0.1:{grpc}"
[admin]
listen = "127.0.0.1:{admin}"
[auth]
allow_unauthenticated = true
[webhook]
listen = "127.0.0.1:{webhook}"
tokens = ["{WEBHOOK_TOKEN}"]
allowed_sources = ["127.0.0.0/8"]
[store]
url = "sqlite://{work}/gateway.db"
key = "{STORE_KEY}"
[poll]
idv_interval = "1h"
review_interval = "1h"
[connectpay]
base_url = "http://127.0.0.1:{sandbox}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
auth_code = "{AUTH_CODE}"
notification_url = "http://127.0.0.1:{webhook}/webhooks/connectpay"
allow_insecure_http = true
[shutdown]
drain_delay = "0s"
grace_period = "5s"
[log]
level = "warn"
"""


def self_costs(path):
    """Instructions each function spent itself, from a callgrind file (name compression resolved)."""
    names, costs = {}, collections.Counter()
    current, after_call = None, False

    def name(token):
        m = re.match(r"\((\d+)\)(?: (.*))?", token)
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), m.group(1))

    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("fn="):
                current = name(line[3:])
            elif line.startswith("cfn="):
                name(line[4:])
            elif line.startswith("calls="):
                after_call = True  # the next cost line is the callee's inclusive cost
            elif line and (line[0].isdigit() or line[0] in "+-*"):
                if after_call:
                    after_call = False
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    costs[current] += int(parts[1])
    return costs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "target/release"))
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--out", default=None, help="where to keep the callgrind file (default: a temporary directory)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    work = args.out or tempfile.mkdtemp(prefix="gateway-instructions-")
    os.makedirs(work, exist_ok=True)
    # A run starts afresh: an earlier run's database holds tokens that a new sandbox never issued.
    for stale in (f for f in os.listdir(work) if f.startswith(("callgrind.out", "gateway.db"))):
        os.remove(os.path.join(work, stale))
    stubs(os.path.join(work, "stubs"))
    import grpc
    from connectpay.onboarding.v1 import onboarding_pb2 as pb
    from connectpay.onboarding.v1 import onboarding_pb2_grpc as rpc

    sandbox_port, ports = free_port(), (free_port(), free_port(), free_port())
    sandbox = subprocess.Popen(
        [
            os.path.join(args.bin_dir, "connectpay-sandbox"),
            "--listen", f"127.0.0.1:{sandbox_port}",
            "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--auth-code", AUTH_CODE,
            "--idv-delay-ms", "3600000", "--review-delay-ms", "3600000",
            "--webhook-token", WEBHOOK_TOKEN,
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(work, "sandbox.log"), "w"),
    )
    config = os.path.join(work, "gateway.toml")
    with open(config, "w") as f:
        f.write(gateway_config(work, ports, sandbox_port))
    out_file = os.path.join(work, "callgrind.out")
    gateway = subprocess.Popen(
        [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
            os.path.join(args.bin_dir, "onboarding-gateway"), "--config", config, "serve",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(work, "gateway.log"), "w"),
        env={k: v for k, v in os.environ.items() if k != "RUST_LOG"},
    )
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{ports[0]}")
        grpc.channel_ready_future(channel).result(timeout=300)
        stub = rpc.OnboardingStub(channel)
        ids = []
        for i in range(50):
            answer = stub.SubmitIdvSession(
                pb.SubmitIdvSessionRequest(
                    external_reference=f"instructions-{i}",
                    session_id=f"instructions-session-{i}",
                    provider_id="ONDATO",
                ),
                timeout=60,
            )
            ids.append(answer.application.application_id)

        def get(i):
            stub.GetApplication(pb.GetApplicationRequest(application_id=ids[i % len(ids)]), timeout=60)

        for i in range(300):
            get(i)
        def control(flag):
            subprocess.run(["callgrind_control", flag, str(gateway.pid)], check=True, capture_output=True)

        control("-z")
        started = time.monotonic()
        for i in range(args.calls):
            get(i)
            time.sleep(0.002)
        seconds = time.monotonic() - started
        control("-d")
    finally:
        gateway.terminate()
        sandbox.terminate()
        gateway.wait(timeout=60)
        sandbox.wait(timeout=60)

    dumps = sorted(f for f in os.listdir(work) if f.startswith("callgrind.out.") and f.endswith(".1"))
    if not dumps:
        sys.exit(f"no callgrind dump in {work}")
    dump = os.path.join(work, dumps[-1])
    costs = self_costs(dump)
    total = sum(costs.values())
    print(f"{args.calls} GetApplication calls in {seconds:.1f} s under callgrind")
    print(f"instructions: {total:,} in all, {total // args.calls:,} per call")
    print(f"callgrind file: {dump} (callgrind_annotate --inclusive=yes --tree=calling {dump})")
    print(f"{'instructions':>14} {'share':>6} {'per call':>9}  function (its own instructions)")
    for function, cost in costs.most_common(args.top):
        print(f"{cost:>14,} {100 * cost / total:5.1f}% {cost // args.calls:>9,}  {function[:140]}")


if __name__ == "__main__":
    main()
