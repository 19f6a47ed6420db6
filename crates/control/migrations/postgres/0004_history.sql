-- Push sessions (DescribeLiveStreamEventList, DescribeLiveStreamPublishedList) and per-stream playback samples
-- (DescribeStreamPlayInfoList), recorded from the hub's events. Times are UNIX seconds (samples: milliseconds).
CREATE TABLE push_sessions (
    id BIGSERIAL PRIMARY KEY,
    domain TEXT NOT NULL,
    app TEXT NOT NULL,
    stream TEXT NOT NULL,
    protocol TEXT NOT NULL DEFAULT '',
    client_ip TEXT NOT NULL DEFAULT '',
    resolution TEXT NOT NULL DEFAULT '',
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    errcode BIGINT NOT NULL DEFAULT 0,
    errmsg TEXT NOT NULL DEFAULT ''
);
CREATE INDEX push_sessions_started ON push_sessions (started_at);
CREATE INDEX push_sessions_key ON push_sessions (domain, app, stream);

CREATE TABLE play_samples (
    at_ms BIGINT NOT NULL,
    span_ms BIGINT NOT NULL,
    domain TEXT NOT NULL,
    app TEXT NOT NULL,
    stream TEXT NOT NULL,
    viewers BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL
);
CREATE INDEX play_samples_at ON play_samples (at_ms);
