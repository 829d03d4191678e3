-- Credits and usage; see the Postgres migration of the same number.

-- +goose Up
CREATE TABLE credit_usage (
    subject      TEXT NOT NULL,
    period_start DATETIME NOT NULL,
    reserved     INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at   DATETIME,
    PRIMARY KEY (subject, period_start)
);

CREATE TABLE usage_daily (
    token_id   TEXT NOT NULL,
    account_id TEXT NOT NULL,
    day        TEXT NOT NULL,
    requests   INTEGER NOT NULL DEFAULT 0,
    credits    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (token_id, day)
);
CREATE INDEX usage_daily_account ON usage_daily (account_id, day);

CREATE TABLE usage_denials (
    token_id TEXT NOT NULL,
    day      TEXT NOT NULL,
    code     TEXT NOT NULL,
    count    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (token_id, day, code)
);

CREATE TABLE replicas (
    id      TEXT PRIMARY KEY,
    seen_at DATETIME NOT NULL
);

-- +goose Down
DROP TABLE replicas;
DROP TABLE usage_denials;
DROP TABLE usage_daily;
DROP TABLE credit_usage;
