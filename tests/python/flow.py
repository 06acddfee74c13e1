"""Drives the onboarding flow through a running gateway with a Python grpcio client generated from proto/.

Usage: flow.py <gateway address> <directory with the generated stubs>
Run by .ci/run against `onboarding-gateway serve --sandbox`; it proves that a client in another language,
generated from the published API, works end to end, including the error details.
"""

import sys
import threading
import time
import uuid

import grpc
from grpc_status import rpc_status

sys.path.insert(0, sys.argv[2])
from connectpay.onboarding.v1 import kyc_pb2, onboarding_pb2, onboarding_pb2_grpc  # noqa: E402
from connectpay.onboarding.v1 import application_pb2  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402

Status = application_pb2.ApplicationStatus


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


def watch(stub, application_id, into, resume_token=""):
    """Reads a WatchApplication stream to its end (heartbeats skipped) into `into`."""
    request = onboarding_pb2.WatchApplicationRequest(application_id=application_id, resume_token=resume_token)
    for message in stub.WatchApplication(request, timeout=60):
        if message.WhichOneof("event") != "heartbeat":
            into.append(message)


def check_stream(messages):
    kinds = [m.WhichOneof("event") for m in messages]
    assert kinds[0] == "snapshot" and all(k == "change" for k in kinds[1:]), kinds
    apps = [getattr(m, m.WhichOneof("event")) for m in messages]
    versions = [a.version for a in apps]
    assert versions == list(range(versions[0], versions[0] + len(versions))), versions
    assert all(m.resume_token for m in messages)
    return [Status.Name(a.status) for a in apps]


def main():
    channel = grpc.insecure_channel(sys.argv[1])
    stub = onboarding_pb2_grpc.OnboardingStub(channel)
    reference = f"python-{uuid.uuid4()}"

    submitted = stub.SubmitIdvSession(
        onboarding_pb2.SubmitIdvSessionRequest(
            external_reference=reference, session_id="python-session", provider_id="ONDATO"
        ),
        timeout=10,
    ).application
    assert submitted.status == Status.APPLICATION_STATUS_IDV_TOKEN_GENERATED, submitted
    assert submitted.version == 1
    watched = []
    watcher = threading.Thread(target=watch, args=(stub, submitted.application_id, watched))
    watcher.start()
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
    history += wait_for(stub, submitted.application_id, Status.APPLICATION_STATUS_ACCOUNT_ISSUED)[-1:]

    assert [a.version for a in history] == [1, 2, 3, 4], [a.version for a in history]
    assert history[-1].baas_client_id, history[-1]

    # The watch opened right after the submit saw the whole flow and ended by itself.
    watcher.join(timeout=30)
    assert not watcher.is_alive(), "the watch did not end after ACCOUNT_ISSUED"
    statuses = check_stream(watched)
    assert statuses[-1] == "APPLICATION_STATUS_ACCOUNT_ISSUED", statuses
    assert statuses[0] == "APPLICATION_STATUS_IDV_TOKEN_GENERATED", statuses

    # Resuming from the snapshot's token replays exactly the rest.
    replayed = []
    watch(stub, submitted.application_id, replayed, resume_token=watched[0].resume_token)
    assert [m.SerializeToString() for m in replayed] == [m.SerializeToString() for m in watched[1:]]
    print(f"python client: flow complete for {submitted.application_id}, baasClientId {history[-1].baas_client_id}")


if __name__ == "__main__":
    main()
