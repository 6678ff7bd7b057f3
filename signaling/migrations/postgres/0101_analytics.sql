-- Analytics written by the SQL sink (api/src/analytics.rs): viewer
-- sessions, players' QoE beacons, and one health row per live stream and
-- second. Times are Unix milliseconds.
CREATE TABLE analytics_viewer_sessions (
    id            TEXT PRIMARY KEY NOT NULL,
    stream        TEXT NOT NULL,
    session       TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    ended_at_ms   BIGINT NOT NULL,
    duration_ms   BIGINT NOT NULL,
    bytes         BIGINT,
    packets_lost  BIGINT
);
CREATE INDEX analytics_viewer_sessions_stream ON analytics_viewer_sessions (stream, started_at_ms);

CREATE TABLE analytics_qoe (
    id                  TEXT PRIMARY KEY NOT NULL,
    stream              TEXT NOT NULL,
    at_ms               BIGINT NOT NULL,
    startup_ms          BIGINT,
    rebuffer_ms         BIGINT NOT NULL,
    watched_ms          BIGINT NOT NULL,
    exited_before_start BIGINT NOT NULL
);
CREATE INDEX analytics_qoe_stream ON analytics_qoe (stream, at_ms);

CREATE TABLE analytics_health (
    stream  TEXT NOT NULL,
    at_ms   BIGINT NOT NULL,
    viewers BIGINT NOT NULL,
    stalled BIGINT NOT NULL,
    PRIMARY KEY (stream, at_ms)
);
