-- Webhook endpoints registered by a stream's owner, and the log of every
-- delivery attempt (one row per attempt, so retries are visible).
CREATE TABLE webhooks (
    id         TEXT PRIMARY KEY NOT NULL,
    -- subject of the token that registered it (account id, or token subject)
    owner      TEXT NOT NULL,
    stream     TEXT NOT NULL,
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    -- comma-separated event types
    events     TEXT NOT NULL,
    -- comma-separated viewer counts that fire viewers.threshold when crossed upwards
    viewer_thresholds TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);
CREATE INDEX webhooks_stream ON webhooks (stream);
CREATE INDEX webhooks_owner ON webhooks (owner);

CREATE TABLE webhook_deliveries (
    id            TEXT PRIMARY KEY NOT NULL,
    webhook_id    TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id      TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    -- HTTP status of the receiver's answer; NULL when no answer (error says why)
    status_code   INTEGER,
    error         TEXT,
    at_ms         INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, at_ms);
