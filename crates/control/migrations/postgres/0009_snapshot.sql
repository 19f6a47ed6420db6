-- Screenshots: snapshot templates, rules and screenshot tasks. Times: UNIX seconds.
CREATE TABLE snapshot_templates (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    interval_s BIGINT NOT NULL,
    width BIGINT NOT NULL DEFAULT 0,
    height BIGINT NOT NULL DEFAULT 0,
    porn_flag BIGINT NOT NULL DEFAULT 0,
    cos_app_id BIGINT NOT NULL DEFAULT 0,
    bucket TEXT NOT NULL DEFAULT '',
    region TEXT NOT NULL DEFAULT '',
    prefix TEXT NOT NULL DEFAULT '',
    file_name TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- app/stream '' = every app/stream of the domain; one rule per (domain, app, stream).
CREATE TABLE snapshot_rules (
    domain TEXT NOT NULL,
    app TEXT NOT NULL,
    stream TEXT NOT NULL,
    template_id BIGINT NOT NULL REFERENCES snapshot_templates (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (domain, app, stream)
);
-- CreateScreenshotTask: screenshots during [start_time, end_time).
CREATE TABLE screenshot_tasks (
    id TEXT PRIMARY KEY,
    domain TEXT NOT NULL,
    app TEXT NOT NULL,
    stream TEXT NOT NULL,
    start_time BIGINT NOT NULL,
    end_time BIGINT NOT NULL,
    template_id BIGINT NOT NULL,
    stream_type BIGINT NOT NULL DEFAULT 0,
    extension TEXT NOT NULL DEFAULT '',
    stopped_at BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX screenshot_tasks_window ON screenshot_tasks (start_time, end_time);
