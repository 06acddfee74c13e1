-- The gateway's state: identifiers, statuses and bookkeeping only. Never KYC data; IDV session ids and
-- request fingerprints only as keyed hashes (HMAC-SHA256); the OAuth pair only sealed (AEAD).
-- Times are microseconds since the Unix epoch.

-- The current version of each application the gateway created.
CREATE TABLE applications (
    id                  TEXT PRIMARY KEY NOT NULL,
    -- The caller that created the application (its authenticated identity): only it may see it.
    owner               TEXT NOT NULL,
    external_reference  TEXT NOT NULL,
    person_id           TEXT,
    status              TEXT NOT NULL,
    upstream_status     TEXT NOT NULL,
    last_known_status   TEXT NOT NULL,
    baas_client_id      TEXT,
    version             INTEGER NOT NULL,
    -- The sequence of the event that recorded this version.
    last_seq            INTEGER NOT NULL,
    session_hash        BLOB,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    -- Poller bookkeeping: when to read it again (NULL once terminal), and how many reads in a row found
    -- nothing new.
    next_poll_at        INTEGER,
    unchanged_polls     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX applications_by_reference ON applications (owner, external_reference, created_at);
CREATE INDEX applications_by_person ON applications (person_id, created_at) WHERE person_id IS NOT NULL;
CREATE UNIQUE INDEX applications_by_session ON applications (session_hash) WHERE session_hash IS NOT NULL;
CREATE INDEX applications_due ON applications (next_poll_at) WHERE next_poll_at IS NOT NULL;

-- Every version callers can see, in commit order. AUTOINCREMENT: a sequence is never reused, even after
-- the newest rows were deleted, because resume tokens name sequences.
CREATE TABLE events (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    application_id      TEXT NOT NULL,
    version             INTEGER NOT NULL,
    -- The caller that created the application (its authenticated identity): only it may see it.
    owner               TEXT NOT NULL,
    external_reference  TEXT NOT NULL,
    person_id           TEXT,
    status              TEXT NOT NULL,
    upstream_status     TEXT NOT NULL,
    last_known_status   TEXT NOT NULL,
    baas_client_id      TEXT,
    created_at          INTEGER NOT NULL,
    recorded_at         INTEGER NOT NULL,
    UNIQUE (application_id, version)
);
CREATE INDEX events_by_application ON events (application_id, seq);
CREATE INDEX events_by_age ON events (recorded_at);

-- Single values: the highest sequence retention has deleted (older resume tokens have expired).
CREATE TABLE meta (
    name   TEXT PRIMARY KEY NOT NULL,
    value  INTEGER NOT NULL
);
INSERT INTO meta (name, value) VALUES ('log_horizon', 0);

-- Authenticated notifications, recorded before they are acknowledged, until confirmed.
CREATE TABLE inbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key       BLOB NOT NULL UNIQUE,
    application_id   TEXT,
    person_id        TEXT,
    claimed_status   TEXT,
    sent_at          TEXT,
    -- W3C trace context of the delivery, so its processing can link to it.
    trace_context    TEXT,
    via_application  INTEGER NOT NULL,
    received_at      INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- Not to be taken before this time (a retry's pause), nor while another worker's lease runs.
    not_before       INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER
);
CREATE INDEX inbox_due ON inbox (not_before);

-- Idempotency records (AIP-155 request_id), per caller and method.
CREATE TABLE requests (
    caller       TEXT NOT NULL,
    method       TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    fingerprint  BLOB NOT NULL,
    -- 'in_progress', 'done' or 'unknown' (the upstream call may or may not have happened).
    state        TEXT NOT NULL,
    owner        TEXT,
    started_at   INTEGER NOT NULL,
    outcome      TEXT,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (caller, method, request_id)
);
CREATE INDEX requests_by_age ON requests (created_at);

-- The OAuth pair, sealed: one row.
CREATE TABLE oauth_pair (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    sealed              BLOB NOT NULL,
    refresh_expires_at  INTEGER,
    updated_at          INTEGER NOT NULL
);
