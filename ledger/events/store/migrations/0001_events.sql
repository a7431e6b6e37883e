-- eventsd database, version 1 (one file for PostgreSQL and SQLite: portable
-- types; times are Unix microseconds). PAN-free: events hold the objects'
-- API representations; endpoint secrets are sealed (AES-GCM) by eventsd.
CREATE TABLE events (
    id             TEXT PRIMARY KEY,
    merchant_id    TEXT NOT NULL,
    type           TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    object_type    TEXT NOT NULL,
    object_id      TEXT NOT NULL,
    object_version BIGINT NOT NULL,
    data           TEXT NOT NULL,
    content_hash   TEXT NOT NULL
);
CREATE INDEX events_merchant_created ON events (merchant_id, created_at, id);

CREATE TABLE endpoints (
    id                     TEXT PRIMARY KEY,
    merchant_id            TEXT NOT NULL,
    url                    TEXT NOT NULL,
    event_types            TEXT NOT NULL,
    description            TEXT NOT NULL DEFAULT '',
    status                 TEXT NOT NULL,
    disabled_reason        TEXT NOT NULL DEFAULT '',
    secret                 TEXT NOT NULL,
    prev_secret            TEXT NOT NULL DEFAULT '',
    prev_secret_expires_at BIGINT NOT NULL DEFAULT 0,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL,
    version                BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX endpoints_merchant ON endpoints (merchant_id, id);

-- A delivery is one event to one endpoint, retried until it succeeds or
-- gives up. A worker leases it (lease_owner, lease_until) for one attempt:
-- a crashed worker's lease runs out and another picks the delivery up.
CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES events (id),
    endpoint_id     TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    merchant_id     TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT NOT NULL DEFAULT '',
    lease_until     BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, created_at);

CREATE TABLE attempts (
    id              TEXT PRIMARY KEY,
    delivery_id     TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    event_id        TEXT NOT NULL,
    endpoint_id     TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    started_at      BIGINT NOT NULL,
    response_status INTEGER NOT NULL DEFAULT 0,
    latency_us      BIGINT NOT NULL DEFAULT 0,
    error           TEXT NOT NULL DEFAULT '',
    succeeded       BOOLEAN NOT NULL
);
CREATE INDEX attempts_endpoint ON attempts (endpoint_id, started_at, id);
