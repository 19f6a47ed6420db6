-- Recording: templates, rules and tasks. Times: UNIX seconds.
-- Each *_param column is the format's RecordParam as a JSON object (enable, interval_s, storage_time_s, bucket,
-- region, path, vod_file_name, vod_sub_app_id, procedure, storage_mode, class_id).
CREATE TABLE record_templates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    flv_param TEXT NOT NULL,
    hls_param TEXT NOT NULL,
    mp4_param TEXT NOT NULL,
    aac_param TEXT NOT NULL,
    mp3_param TEXT NOT NULL,
    hls_resume_timeout_s INTEGER NOT NULL DEFAULT 0,
    is_delay_live INTEGER NOT NULL DEFAULT 0,
    cos_store INTEGER NOT NULL DEFAULT 0,
    remove_watermark INTEGER NOT NULL DEFAULT 0,
    upload_in_recording INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
-- app/stream '' = every app/stream of the domain; one rule per (domain, app, stream).
CREATE TABLE record_rules (
    domain TEXT NOT NULL,
    app TEXT NOT NULL,
    stream TEXT NOT NULL,
    template_id INTEGER NOT NULL REFERENCES record_templates (id),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (domain, app, stream)
);
-- CreateRecordTask: record [start_time, end_time); template_id 0 = the default template (HLS).
CREATE TABLE record_tasks (
    id TEXT PRIMARY KEY,
    domain TEXT NOT NULL,
    app TEXT NOT NULL,
    stream TEXT NOT NULL,
    start_time INTEGER NOT NULL,
    end_time INTEGER NOT NULL,
    template_id INTEGER NOT NULL,
    stream_type INTEGER NOT NULL DEFAULT 0,
    extension TEXT NOT NULL DEFAULT '',
    stopped_at INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX record_tasks_window ON record_tasks (start_time, end_time);
