-- Domains (push/play), their auth keys and referer rules. Times are UNIX seconds; flags are 0/1.
CREATE TABLE domains (
    name TEXT PRIMARY KEY NOT NULL,
    type INTEGER NOT NULL,
    status INTEGER NOT NULL DEFAULT 1,
    play_type INTEGER NOT NULL DEFAULT 1,
    is_delay_live INTEGER NOT NULL DEFAULT 0,
    is_mini_program_live INTEGER NOT NULL DEFAULT 0,
    push_domain TEXT NULL,
    target_cname TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);

CREATE TABLE domain_auth (
    domain TEXT PRIMARY KEY NOT NULL REFERENCES domains (name) ON DELETE CASCADE,
    enable INTEGER NOT NULL DEFAULT 0,
    master_key TEXT NOT NULL DEFAULT '',
    backup_key TEXT NOT NULL DEFAULT '',
    auth_delta INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE domain_referer (
    domain TEXT PRIMARY KEY NOT NULL REFERENCES domains (name) ON DELETE CASCADE,
    enable INTEGER NOT NULL DEFAULT 0,
    type INTEGER NOT NULL DEFAULT 0,
    allow_empty INTEGER NOT NULL DEFAULT 1,
    rules TEXT NOT NULL DEFAULT ''
);
