-- Time shifting: templates, rules, recording sessions and the per-segment time index. Times: UNIX s or ms.
CREATE TABLE timeshift_templates (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    duration BIGINT NOT NULL,
    item_duration BIGINT NOT NULL,
    area TEXT NOT NULL DEFAULT '',
    remove_watermark BIGINT NOT NULL DEFAULT 0,
    transcode_template_ids TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- app/stream '*' = every app/stream of the domain.
CREATE TABLE timeshift_rules (
    domain TEXT NOT NULL,
    app TEXT NOT NULL,
    stream TEXT NOT NULL,
    template_id BIGINT NOT NULL REFERENCES timeshift_templates (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (domain, app, stream)
);
-- One row per publisher of a stream under a rule (Sid).
CREATE TABLE timeshift_sessions (
    sid TEXT PRIMARY KEY,
    domain TEXT NOT NULL,
    app TEXT NOT NULL,
    stream TEXT NOT NULL,
    template_id BIGINT NOT NULL,
    retention_s BIGINT NOT NULL,
    item_duration BIGINT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT
);
CREATE INDEX timeshift_sessions_stream ON timeshift_sessions (domain, app, stream, start_ms);
-- The time index: one row per stored segment.
CREATE TABLE timeshift_segments (
    sid TEXT NOT NULL,
    seq BIGINT NOT NULL,
    domain TEXT NOT NULL,
    app TEXT NOT NULL,
    stream TEXT NOT NULL,
    wall_ms BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    path TEXT NOT NULL,
    discontinuity BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (sid, seq)
);
CREATE INDEX timeshift_segments_time ON timeshift_segments (domain, app, stream, wall_ms);
CREATE INDEX timeshift_segments_expiry ON timeshift_segments (expires_at_ms);
