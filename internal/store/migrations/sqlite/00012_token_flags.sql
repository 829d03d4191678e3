-- Unusual usage; see the Postgres migration of the same number.

-- +goose Up
CREATE TABLE usage_minutes (
    token_id       TEXT NOT NULL,
    account_id     TEXT NOT NULL,
    minute         DATETIME NOT NULL,
    requests       INTEGER NOT NULL DEFAULT 0,
    denied         INTEGER NOT NULL DEFAULT 0,
    secret_browser INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (token_id, minute)
);
CREATE INDEX usage_minutes_minute ON usage_minutes (minute);

CREATE TABLE denial_minutes (
    token_id TEXT NOT NULL,
    minute   DATETIME NOT NULL,
    code     TEXT NOT NULL,
    count    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (token_id, minute, code)
);
CREATE INDEX denial_minutes_minute ON denial_minutes (minute);

CREATE TABLE token_sightings (
    token_id   TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('network', 'site')),
    value      TEXT NOT NULL,
    first_seen DATETIME NOT NULL,
    last_seen  DATETIME NOT NULL,
    PRIMARY KEY (token_id, kind, value)
);

CREATE TABLE token_flags (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    token_id    TEXT NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    account_id  TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('spike', 'denials', 'new_network', 'new_site', 'secret_in_browser')),
    evidence    TEXT NOT NULL DEFAULT '{}',
    opened_at   DATETIME NOT NULL,
    seen_at     DATETIME NOT NULL,
    resolved_at DATETIME,
    resolved_by TEXT
);
CREATE UNIQUE INDEX token_flags_open ON token_flags (token_id, kind) WHERE resolved_at IS NULL;
CREATE INDEX token_flags_account ON token_flags (account_id, id);

-- +goose Down
DROP TABLE token_flags;
DROP TABLE token_sightings;
DROP TABLE denial_minutes;
DROP TABLE usage_minutes;
