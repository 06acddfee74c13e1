// Drives the onboarding flow through a running gateway with a Node client (@grpc/grpc-js) that loads the
// API from proto/ at run time (@grpc/proto-loader), on a channel configured by
// config/grpc_service_config.json.
//
// Usage: node tests/node/flow.mjs <gateway address>      (after `npm ci` in tests/node)
// Run by .ci/run against `onboarding-gateway serve --sandbox`, right after tests/python/flow.py. Besides the
// flow, it proves on a local stand-in server that the service config retries GetApplication on UNAVAILABLE
// and never retries a submit or a watch. docs/calling.md quotes this file: keep the two consistent.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const address = process.argv[2] ?? '127.0.0.1:50051';

// The API, loaded from proto/ at run time. tests/node/proto holds the google.protobuf well-known types and
// google.rpc's Status and error details (copied unchanged from Google's published protos).
const includeDirs = [path.join(repo, 'proto'), path.join(here, 'proto')];
const definition = protoLoader.loadSync('connectpay/onboarding/v1/onboarding.proto', {
  includeDirs,
  keepCase: false, // camelCase fields: externalReference, resumeToken, ...
  longs: String, // uint64 version as a decimal string
  enums: String, // 'APPLICATION_STATUS_ACCOUNT_ISSUED'
  defaults: true,
  oneofs: true, // message.event names the field of the oneof that is set
});
const { Onboarding } = grpc.loadPackageDefinition(definition).connectpay.onboarding.v1;

// The channel's policy: retry GetApplication on UNAVAILABLE, never a submit or a watch, upper-bound deadlines.
const serviceConfig = readFileSync(path.join(repo, 'config', 'grpc_service_config.json'), 'utf8');

function connect(target) {
  return new Onboarding(target, grpc.credentials.createInsecure(), {
    'grpc.service_config': serviceConfig,
    'grpc.service_config_disable_resolution': 1, // this file is the policy, not a DNS TXT record
  });
}

// google.rpc.Status from the `grpc-status-details-bin` trailer, decoded with protobufjs (field names as in
// the .proto files: type_url, field_violations, retry_delay).
const rpc = new protobuf.Root();
rpc.resolvePath = (_origin, target) => path.join(here, 'proto', target);
rpc.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: true });
const RpcStatus = rpc.lookupType('google.rpc.Status');

function errorDetails(error) {
  const [bytes] = error.metadata?.get('grpc-status-details-bin') ?? [];
  assert.ok(bytes, `the error carries google.rpc.Status details: ${error.message}`);
  const status = RpcStatus.decode(bytes);
  assert.equal(status.code, error.code);
  const found = { reason: undefined, fields: [], retryDelay: undefined };
  for (const any of status.details) {
    const type = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    const detail = rpc.lookupType(type).decode(any.value);
    switch (type) {
      case 'google.rpc.ErrorInfo':
        assert.equal(detail.domain, 'onboarding-gateway');
        found.reason = detail.reason;
        break;
      case 'google.rpc.BadRequest':
        found.fields = detail.field_violations.map((v) => v.field);
        break;
      case 'google.rpc.RetryInfo':
        found.retryDelay = detail.retry_delay; // { seconds, nanos }: wait at least this long
        break;
    }
  }
  return found;
}

// A unary call as a promise, with a deadline (the service config's timeout is only an upper bound).
function unary(client, method, request, seconds) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + seconds * 1000 }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

// Reads a WatchApplication stream (heartbeats skipped) into `into`. With `interruptAfterFirstChange`, the
// stream is cancelled by the client as soon as a `change` arrives, as a crashing consumer would drop it.
// Returns the stream's final status code.
async function watch(client, request, into, { interruptAfterFirstChange = false } = {}) {
  const call = client.WatchApplication(request, { deadline: Date.now() + 60_000 });
  try {
    for await (const message of call) {
      if (message.event === 'heartbeat') continue;
      into.push(message);
      if (interruptAfterFirstChange && message.event === 'change') {
        call.cancel();
        return grpc.status.CANCELLED;
      }
    }
  } catch (error) {
    return error.code;
  }
  return grpc.status.OK;
}

const app = (message) => message[message.event];

function checkVersions(messages) {
  const versions = messages.map((m) => Number(app(m).version));
  versions.forEach((v, i) => assert.equal(v, versions[0] + i, `versions consecutive: ${versions}`));
  assert.ok(messages.every((m) => m.resumeToken), 'every message carries a resume token');
  return messages.map((m) => app(m).status);
}

// The service config, proven on a local stand-in server that always answers UNAVAILABLE (GetApplication:
// the first two attempts only): the read is retried, the submits and the watch are not.
async function checkServiceConfig() {
  const attempts = {};
  const count = (method) => (attempts[method] = (attempts[method] ?? 0) + 1);
  const outage = { code: grpc.status.UNAVAILABLE, details: 'stand-in outage' };
  const server = new grpc.Server();
  const failing = (method) => (call, done) => {
    count(method);
    return done ? done(outage) : call.emit('error', outage);
  };
  server.addService(Onboarding.service, {
    GetApplication: (call, done) =>
      count('GetApplication') < 3 ? done(outage) : done(null, { application: { applicationId: 'stand-in' } }),
    SubmitIdvSession: failing('SubmitIdvSession'),
    InitiateOnboarding: failing('InitiateOnboarding'),
    WatchApplication: failing('WatchApplication'),
    WatchApplications: failing('WatchApplications'),
  });
  const port = await new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  const client = connect(`127.0.0.1:${port}`);
  try {
    const read = await unary(client, 'GetApplication', { applicationId: 'stand-in' }, 10);
    assert.equal(read.application.applicationId, 'stand-in');
    for (const method of ['SubmitIdvSession', 'InitiateOnboarding']) {
      await assert.rejects(unary(client, method, {}, 10), { code: grpc.status.UNAVAILABLE });
    }
    assert.equal(await watch(client, { applicationId: 'stand-in' }, []), grpc.status.UNAVAILABLE);
    assert.deepEqual(attempts, { GetApplication: 3, SubmitIdvSession: 1, InitiateOnboarding: 1, WatchApplication: 1 });
  } finally {
    client.close();
    server.forceShutdown();
  }
}

async function main() {
  await checkServiceConfig();

  const client = connect(address);
  const reference = `node-${randomUUID()}`;

  const { application: submitted } = await unary(
    client,
    'SubmitIdvSession',
    {
      externalReference: reference,
      sessionId: `node-session-${randomUUID()}`,
      providerId: 'ONDATO',
      requestId: randomUUID(), // an idempotency key: a retry of this submit must reuse it
    },
    10,
  );
  assert.equal(submitted.status, 'APPLICATION_STATUS_IDV_TOKEN_GENERATED');
  assert.equal(submitted.version, '1');
  const applicationId = submitted.applicationId;

  // Watch, and drop the stream after its first change (IDV approved, 2 s later in the sandbox).
  const watched = [];
  const interrupted = await watch(client, { applicationId }, watched, { interruptAfterFirstChange: true });
  assert.equal(interrupted, grpc.status.CANCELLED);
  assert.deepEqual(
    watched.map((m) => [m.event, app(m).status]),
    [
      ['snapshot', 'APPLICATION_STATUS_IDV_TOKEN_GENERATED'],
      ['change', 'APPLICATION_STATUS_IDV_APPROVED'],
    ],
  );
  const lastToken = watched.at(-1).resumeToken;

  const { application: read } = await unary(client, 'GetApplication', { applicationId }, 5);
  assert.equal(read.status, 'APPLICATION_STATUS_IDV_APPROVED');
  assert.equal(read.version, '2');

  const kyc = {
    isUbo: true,
    pep: { isPep: false },
    address: { countryCode: 'LT', addressLine1: 'Gedimino pr. 1', city: 'Vilnius', postcode: '01103' },
    accountPurposes: ['SALARY'],
    additionalFields: { fields: { sourceOfFunds: { stringValue: 'SALARY' } } },
  };

  // An invalid field first: INVALID_ARGUMENT, with the reason and the field's path in the details.
  const bad = { ...kyc, address: { ...kyc.address, city: 'Vi' } };
  await assert.rejects(
    unary(client, 'InitiateOnboarding', { applicationId, requestId: randomUUID(), kyc: bad }, 10),
    (error) => {
      assert.equal(error.code, grpc.status.INVALID_ARGUMENT, error.message);
      const { reason, fields } = errorDetails(error);
      assert.equal(reason, 'INVALID_FIELDS');
      assert.deepEqual(fields, ['kyc.address.city']);
      return true;
    },
  );

  const { application: initiated } = await unary(
    client,
    'InitiateOnboarding',
    { applicationId, requestId: randomUUID(), kyc },
    10,
  );
  assert.equal(initiated.status, 'APPLICATION_STATUS_COMPLIANCE_REVIEW');
  assert.equal(initiated.version, '3');

  // Resume with the last token: what happened meanwhile (version 3) is replayed, then the stream goes on
  // live to ACCOUNT_ISSUED and ends by itself with OK.
  const resumed = [];
  assert.equal(await watch(client, { applicationId, resumeToken: lastToken }, resumed), grpc.status.OK);
  assert.ok(resumed.every((m) => m.event === 'change'), 'a resumed watch sends changes only');
  const statuses = checkVersions([...watched, ...resumed]);
  assert.deepEqual(statuses, [
    'APPLICATION_STATUS_IDV_TOKEN_GENERATED',
    'APPLICATION_STATUS_IDV_APPROVED',
    'APPLICATION_STATUS_COMPLIANCE_REVIEW',
    'APPLICATION_STATUS_ACCOUNT_ISSUED',
  ]);
  const issued = app(resumed.at(-1));
  assert.ok(issued.baasClientId, 'ACCOUNT_ISSUED carries the baas_client_id');

  client.close();
  console.log(`node client: flow complete for ${applicationId}, baasClientId ${issued.baasClientId}`);
}

await main();
