-- Streams refused for publishing (ForbidLiveStream) until resume_at. Times are UNIX seconds.
CREATE TABLE forbidden_streams (
    domain TEXT NOT NULL,
    app TEXT NOT NULL,
    stream TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    forbidden_at INTEGER NOT NULL,
    resume_at INTEGER NOT NULL,
    PRIMARY KEY (domain, app, stream)
);
