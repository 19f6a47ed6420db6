-- Callback templates, rules, the durable outbox and its delivery attempts (brief §4.2, §6). Times: UNIX s or ms.
CREATE TABLE callback_templates (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    stream_begin_url TEXT NOT NULL DEFAULT '',
    stream_end_url TEXT NOT NULL DEFAULT '',
    record_url TEXT NOT NULL DEFAULT '',
    record_status_url TEXT NOT NULL DEFAULT '',
    snapshot_url TEXT NOT NULL DEFAULT '',
    porn_url TEXT NOT NULL DEFAULT '',
    stream_mix_url TEXT NOT NULL DEFAULT '',
    push_exception_url TEXT NOT NULL DEFAULT '',
    audio_audit_url TEXT NOT NULL DEFAULT '',
    record_exception_url TEXT NOT NULL DEFAULT '',
    record_exception_levels TEXT NOT NULL DEFAULT '[]',
    callback_key TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE callback_rules (
    domain TEXT NOT NULL,
    app TEXT NOT NULL,
    template_id BIGINT NOT NULL REFERENCES callback_templates (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (domain, app)
);
CREATE TABLE callback_outbox (
    id BIGSERIAL PRIMARY KEY,
    event_type BIGINT NOT NULL,
    url TEXT NOT NULL,
    callback_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    domain TEXT NOT NULL,
    app TEXT NOT NULL,
    stream TEXT NOT NULL,
    sequence TEXT NOT NULL,
    event_time BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX callback_outbox_due ON callback_outbox (status, next_attempt_at_ms);
CREATE TABLE callback_attempts (
    id BIGSERIAL PRIMARY KEY,
    outbox_id BIGINT NOT NULL REFERENCES callback_outbox (id),
    attempt BIGINT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT NOT NULL,
    request_body TEXT NOT NULL,
    http_status BIGINT,
    response_body TEXT NOT NULL DEFAULT '',
    result_code BIGINT NOT NULL,
    error TEXT
);
CREATE INDEX callback_attempts_started ON callback_attempts (started_at_ms);
-- Pushes whose event 0 is still owed; a crash leaves rows here, and startup sends event 0 (errcode 5) for them.
CREATE TABLE callback_open_pushes (
    sequence TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    callback_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    domain TEXT NOT NULL,
    app TEXT NOT NULL,
    stream TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL
);
