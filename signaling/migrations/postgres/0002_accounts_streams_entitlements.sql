-- Accounts, integrator API keys, revoked tokens, stream ownership and
-- visibility, stream sessions, entitlements and processed payment events.
-- Times are unix seconds; `_ms` columns are unix milliseconds.

CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    username      TEXT NOT NULL UNIQUE,
    -- argon2id, PHC string format (algorithm, parameters and salt included)
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'broadcaster', 'admin', 'integrator')),
    created_at    BIGINT NOT NULL
);

-- Streams made by `relaycast keys create` have no owner (admins manage them).
ALTER TABLE streams ADD COLUMN owner_id TEXT REFERENCES users(id) ON DELETE SET NULL;
ALTER TABLE streams ADD COLUMN title TEXT NOT NULL DEFAULT '';
-- public: anyone may play; authenticated: any signed-in user's token;
-- entitled: a play token for the stream (issued after an entitlement check).
ALTER TABLE streams ADD COLUMN visibility TEXT NOT NULL DEFAULT 'public'
    CHECK (visibility IN ('public', 'authenticated', 'entitled'));
-- A "private" stream needed a play token for it: that is "entitled".
UPDATE streams SET visibility = 'entitled' WHERE private <> 0;
ALTER TABLE streams DROP COLUMN private;
-- Comma-separated ISO 3166-1 alpha-2 codes / CIDR ranges; '' = no rule.
ALTER TABLE streams ADD COLUMN allowed_countries TEXT NOT NULL DEFAULT '';
ALTER TABLE streams ADD COLUMN allowed_cidrs TEXT NOT NULL DEFAULT '';
ALTER TABLE streams ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX streams_owner ON streams(owner_id);

-- A key's public identifier (the hash itself is never shown).
ALTER TABLE stream_keys ADD COLUMN id TEXT;
UPDATE stream_keys SET id = substr(key_hash, 1, 16);
CREATE UNIQUE INDEX stream_keys_id ON stream_keys(id);

-- Integrator API keys: 256-bit random secrets, stored as SHA-256 like
-- stream keys.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX api_keys_user ON api_keys(user_id);

-- Deny-list of JWT ids; rows past expires_at may be deleted.
CREATE TABLE revoked_tokens (
    jti         TEXT PRIMARY KEY NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT NOT NULL
);

-- One row per publishing session of a stream (Live .. Ended). No foreign
-- key: a stream published with a token need not be registered.
CREATE TABLE stream_sessions (
    id            TEXT PRIMARY KEY NOT NULL,
    stream        TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    ended_at_ms   BIGINT,
    peak_viewers  BIGINT NOT NULL DEFAULT 0,
    stalls        BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX stream_sessions_stream ON stream_sessions(stream, started_at_ms);

-- Grants to watch: a subscription to a broadcaster (all their streams) or
-- pay-per-view of one stream. Exactly one of broadcaster_id / stream.
CREATE TABLE entitlements (
    id             TEXT PRIMARY KEY NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind           TEXT NOT NULL CHECK (kind IN ('subscription', 'ppv')),
    broadcaster_id TEXT REFERENCES users(id) ON DELETE CASCADE,
    stream         TEXT REFERENCES streams(name) ON DELETE CASCADE,
    -- the payment provider's subscription or checkout session id
    external_ref   TEXT,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT,
    revoked_at     BIGINT,
    CHECK ((broadcaster_id IS NULL AND stream IS NOT NULL)
        OR (broadcaster_id IS NOT NULL AND stream IS NULL))
);
CREATE INDEX entitlements_user ON entitlements(user_id);
CREATE INDEX entitlements_ref ON entitlements(external_ref);

-- Payment-provider events already applied (webhooks are retried).
CREATE TABLE payment_events (
    event_id     TEXT PRIMARY KEY NOT NULL,
    event_type   TEXT NOT NULL,
    received_at  BIGINT NOT NULL
);
