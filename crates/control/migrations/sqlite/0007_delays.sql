-- Delayed playback configured through the API (AddDelayLiveStream): applied when the stream's next push starts.
CREATE TABLE delayed_streams (
    domain TEXT NOT NULL,
    app TEXT NOT NULL,
    stream TEXT NOT NULL,
    delay_secs INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expire_at INTEGER NOT NULL,
    PRIMARY KEY (domain, app, stream)
);
