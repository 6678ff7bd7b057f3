CREATE TABLE IF NOT EXISTS streams (
    name        TEXT PRIMARY KEY NOT NULL,
    private     BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL
);

-- Stream keys are stored as SHA-256 of the key: keys are 256-bit random
-- values, so a fast hash is as strong as a slow one and keeps WHIP fast.
CREATE TABLE IF NOT EXISTS stream_keys (
    key_hash    TEXT PRIMARY KEY NOT NULL,
    stream      TEXT NOT NULL REFERENCES streams(name) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE INDEX IF NOT EXISTS stream_keys_stream ON stream_keys(stream);
