-- Time shifting: templates, rules, recording sessions and the per-segment time index. Times: UNIX s or ms.
CREATE TABLE timeshift_templates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    duration INTEGER NOT NULL,
    item_duration INTEGER NOT NULL,
    area TEXT NOT NULL DEFAULT '',
    remove_watermark INTEGER NOT NULL DEFAULT 0,
    transcode_template_ids TEXT NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
-- app/stream '*' = every app/stream of the domain.
CREATE TABLE timeshift_rules (
    domain TEXT NOT NULL,
    app TEXT NOT NULL,
    stream TEXT NOT NULL,
    template_id INTEGER NOT NULL REFERENCES timeshift_templates (id),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (domain, app, stream)
);
-- One row per publisher of a stream under a rule (Sid).
CREATE TABLE timeshift_sessions (
    sid TEXT PRIMARY KEY,
    domain TEXT NOT NULL,
    app TEXT NOT NULL,
    stream TEXT NOT NULL,
    template_id INTEGER NOT NULL,
    retention_s INTEGER NOT NULL,
    item_duration INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER
);
CREATE INDEX timeshift_sessions_stream ON timeshift_sessions (domain, app, stream, start_ms);
-- The time index: one row per stored segment.
CREATE TABLE timeshift_segments (
    sid TEXT NOT NULL,
    seq INTEGER NOT NULL,
    domain TEXT NOT NULL,
    app TEXT NOT NULL,
    stream TEXT NOT NULL,
    wall_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    path TEXT NOT NULL,
    discontinuity INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    PRIMARY KEY (sid, seq)
);
CREATE INDEX timeshift_segments_time ON timeshift_segments (domain, app, stream, wall_ms);
CREATE INDEX timeshift_segments_expiry ON timeshift_segments (expires_at_ms);
