"""Drives the onboarding flow through a running gateway with a Python grpcio client generated from proto/.

Usage: flow.py <gateway address> <directory with the generated stubs>
Run by .ci/run against `onboarding-gateway serve --sandbox`; it proves that a client in another language,
generated from the published API, works end to end, including the error details and a watch that is dropped
and resumed with its last token. The channel is configured by config/grpc_service_config.json, whose policy
(GetApplication retried on UNAVAILABLE, submits and watches never) is first proven on a local stand-in server.
docs/calling.md quotes this file: keep the two consistent.
"""

import collections
import sys
import threading
import time
import uuid
from concurrent import futures
from pathlib import Path

import grpc
from grpc_status import rpc_status

sys.path.insert(0, sys.argv[2])
from connectpay.onboarding.v1 import kyc_pb2, onboarding_pb2, onboarding_pb2_grpc  # noqa: E402
from connectpay.onboarding.v1 import application_pb2  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402

Status = application_pb2.ApplicationStatus

# The channel's policy: retry GetApplication on UNAVAILABLE, never a submit or a watch, upper-bound deadlines.
SERVICE_CONFIG = (Path(__file__).resolve().parents[2] / "config" / "grpc_service_config.json").read_text()


def connect(target):
    return grpc.insecure_channel(
        target,
        options=[
            ("grpc.service_config", SERVICE_CONFIG),
            ("grpc.service_config_disable_resolution", 1),  # this file is the policy, not a DNS TXT record
        ],
    )


def wait_for(stub, application_id, wanted, timeout=30.0):
    seen = []
    give_up = time.monotonic() + timeout
    while True:
        app = stub.GetApplication(
            onboarding_pb2.GetApplicationRequest(application_id=application_id), timeout=5
        ).application
        if not seen or seen[-1].version != app.version:
            seen.append(app)
        if app.status == wanted:
            return seen
        if time.monotonic() > give_up:
            raise AssertionError(f"still {Status.Name(app.status)} after {timeout}s")
        time.sleep(0.2)


def error_reason(error):
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries google.rpc.Status details"
    reason, fields = None, []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert info.domain == "onboarding-gateway", info.domain
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return reason, fields


def watch(stub, application_id, into, resume_token="", interrupt_after_first_change=False):
    """Reads a WatchApplication stream to its end (heartbeats skipped) into `into`. With
    `interrupt_after_first_change`, the client cancels the stream as soon as a `change` arrives, as a crashing
    consumer would drop it."""
    request = onboarding_pb2.WatchApplicationRequest(application_id=application_id, resume_token=resume_token)
    call = stub.WatchApplication(request, timeout=60)
    for message in call:
        if message.WhichOneof("event") != "heartbeat":
            into.append(message)
        if interrupt_after_first_change and message.WhichOneof("event") == "change":
            call.cancel()
            return


def check_stream(messages):
    kinds = [m.WhichOneof("event") for m in messages]
    assert kinds[0] == "snapshot" and all(k == "change" for k in kinds[1:]), kinds
    apps = [getattr(m, m.WhichOneof("event")) for m in messages]
    versions = [a.version for a in apps]
    assert versions == list(range(versions[0], versions[0] + len(versions))), versions
    assert all(m.resume_token for m in messages)
    return [Status.Name(a.status) for a in apps]


class StandIn(onboarding_pb2_grpc.OnboardingServicer):
    """Answers UNAVAILABLE to everything (GetApplication: to its first two attempts only), counting attempts."""

    def __init__(self):
        self.attempts = collections.Counter()

    def GetApplication(self, request, context):
        self.attempts["GetApplication"] += 1
        if self.attempts["GetApplication"] < 3:
            context.abort(grpc.StatusCode.UNAVAILABLE, "stand-in outage")
        application = application_pb2.Application(application_id="stand-in")
        return onboarding_pb2.GetApplicationResponse(application=application)

    def SubmitIdvSession(self, request, context):
        self.attempts["SubmitIdvSession"] += 1
        context.abort(grpc.StatusCode.UNAVAILABLE, "stand-in outage")

    def InitiateOnboarding(self, request, context):
        self.attempts["InitiateOnboarding"] += 1
        context.abort(grpc.StatusCode.UNAVAILABLE, "stand-in outage")

    def WatchApplication(self, request, context):
        self.attempts["WatchApplication"] += 1
        context.abort(grpc.StatusCode.UNAVAILABLE, "stand-in outage")
        yield  # a generator: WatchApplication is a server stream


def check_service_config():
    """The service config, proven on the stand-in: the read is retried, the submits and the watch are not."""
    stand_in = StandIn()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    onboarding_pb2_grpc.add_OnboardingServicer_to_server(stand_in, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with connect(f"127.0.0.1:{port}") as channel:
            stub = onboarding_pb2_grpc.OnboardingStub(channel)
            read = stub.GetApplication(onboarding_pb2.GetApplicationRequest(application_id="stand-in"), timeout=10)
            assert read.application.application_id == "stand-in"
            for method, request in [
                (stub.SubmitIdvSession, onboarding_pb2.SubmitIdvSessionRequest()),
                (stub.InitiateOnboarding, onboarding_pb2.InitiateOnboardingRequest()),
            ]:
                try:
                    method(request, timeout=10)
                    raise AssertionError("the stand-in answered")
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
            try:
                watch(stub, "stand-in", [])
                raise AssertionError("the stand-in's watch ended OK")
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error
    finally:
        server.stop(None)
    expected = {"GetApplication": 3, "SubmitIdvSession": 1, "InitiateOnboarding": 1, "WatchApplication": 1}
    assert dict(stand_in.attempts) == expected, dict(stand_in.attempts)


def main():
    check_service_config()
    channel = connect(sys.argv[1])
    stub = onboarding_pb2_grpc.OnboardingStub(channel)
    reference = f"python-{uuid.uuid4()}"

    submitted = stub.SubmitIdvSession(
        onboarding_pb2.SubmitIdvSessionRequest(
            external_reference=reference, session_id=f"python-session-{uuid.uuid4()}", provider_id="ONDATO"
        ),
        timeout=10,
    ).application
    assert submitted.status == Status.APPLICATION_STATUS_IDV_TOKEN_GENERATED, submitted
    assert submitted.version == 1
    watched = []
    watcher = threading.Thread(target=watch, args=(stub, submitted.application_id, watched))
    watcher.start()
    # A second watch, dropped by the client after its first change (IDV approved, 2 s later in the sandbox)
    # and resumed with its last token once more has happened.
    interrupted = []
    watch(stub, submitted.application_id, interrupted, interrupt_after_first_change=True)
    assert [(m.WhichOneof("event"), Status.Name(getattr(m, m.WhichOneof("event")).status)) for m in interrupted] == [
        ("snapshot", "APPLICATION_STATUS_IDV_TOKEN_GENERATED"),
        ("change", "APPLICATION_STATUS_IDV_APPROVED"),
    ], interrupted
    history = [submitted] + wait_for(stub, submitted.application_id, Status.APPLICATION_STATUS_IDV_APPROVED)[-1:]
    assert history[-1].version == 2, history

    kyc = kyc_pb2.PersonalKyc(
        is_ubo=True,
        pep=kyc_pb2.Pep(is_pep=False),
        address=kyc_pb2.Address(
            country_code="LT", address_line1="Gedimino pr. 1", city="Vilnius", postcode="01103"
        ),
        account_purposes=["SALARY"],
    )
    kyc.additional_fields.update({"sourceOfFunds": "SALARY"})

    # An invalid field first: INVALID_ARGUMENT, with the field's path in the details.
    bad = kyc_pb2.PersonalKyc()
    bad.CopyFrom(kyc)
    bad.address.city = "Vi"
    try:
        stub.InitiateOnboarding(
            onboarding_pb2.InitiateOnboardingRequest(application_id=submitted.application_id, kyc=bad),
            timeout=10,
        )
        raise AssertionError("invalid KYC was accepted")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        assert error_reason(error) == ("INVALID_FIELDS", ["kyc.address.city"]), error_reason(error)

    initiated = stub.InitiateOnboarding(
        onboarding_pb2.InitiateOnboardingRequest(application_id=submitted.application_id, kyc=kyc),
        timeout=10,
    ).application
    assert initiated.status == Status.APPLICATION_STATUS_COMPLIANCE_REVIEW, initiated
    history.append(initiated)
    # The interrupted watch, resumed with its last token now that version 3 is recorded: version 3 is
    # replayed, version 4 follows live, and the stream ends by itself.
    resumed = []
    watch(stub, submitted.application_id, resumed, resume_token=interrupted[-1].resume_token)
    history += wait_for(stub, submitted.application_id, Status.APPLICATION_STATUS_ACCOUNT_ISSUED)[-1:]

    assert [a.version for a in history] == [1, 2, 3, 4], [a.version for a in history]
    assert history[-1].baas_client_id, history[-1]

    # The watch opened right after the submit saw the whole flow and ended by itself.
    watcher.join(timeout=30)
    assert not watcher.is_alive(), "the watch did not end after ACCOUNT_ISSUED"
    statuses = check_stream(watched)
    assert statuses[-1] == "APPLICATION_STATUS_ACCOUNT_ISSUED", statuses
    assert statuses[0] == "APPLICATION_STATUS_IDV_TOKEN_GENERATED", statuses

    # The interrupted watch and its resumption: nothing missing, nothing repeated.
    assert all(m.WhichOneof("event") == "change" for m in resumed), resumed
    assert check_stream(interrupted + resumed) == statuses, check_stream(interrupted + resumed)
    assert [m.SerializeToString() for m in interrupted[1:] + resumed] == [m.SerializeToString() for m in watched[1:]]

    # Resuming from the snapshot's token replays exactly the rest.
    replayed = []
    watch(stub, submitted.application_id, replayed, resume_token=watched[0].resume_token)
    assert [m.SerializeToString() for m in replayed] == [m.SerializeToString() for m in watched[1:]]
    print(f"python client: flow complete for {submitted.application_id}, baasClientId {history[-1].baas_client_id}")


if __name__ == "__main__":
    main()
