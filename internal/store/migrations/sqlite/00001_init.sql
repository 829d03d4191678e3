-- Tollgate's policy schema for the embedded store: the same tables as the
-- Postgres schema, in SQLite's types. Token values are never stored: only
-- the SHA-256 of each value (token_keys.hash).

-- +goose Up
CREATE TABLE accounts (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    premium      BOOLEAN NOT NULL DEFAULT 0,
    credit_quota INTEGER CHECK (credit_quota >= 0),
    created_at   DATETIME NOT NULL,
    updated_at   DATETIME NOT NULL
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email         TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    password_hash TEXT NOT NULL DEFAULT '',
    created_at    DATETIME NOT NULL
);
CREATE INDEX users_account ON users (account_id, created_at);

CREATE TABLE tokens (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id          TEXT REFERENCES users (id) ON DELETE SET NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('publishable', 'secret')),
    nickname         TEXT NOT NULL,
    prefix           TEXT NOT NULL,
    enabled          BOOLEAN NOT NULL DEFAULT 1,
    expires_at       DATETIME,
    core             BOOLEAN NOT NULL DEFAULT 0,
    premium          BOOLEAN NOT NULL DEFAULT 0,
    datasets         TEXT NOT NULL DEFAULT '{}',
    allowed_apis     TEXT NOT NULL DEFAULT '[]',
    grants           TEXT NOT NULL DEFAULT '[]',
    allowed_domains  TEXT NOT NULL DEFAULT '[]',
    allowed_ips      TEXT NOT NULL DEFAULT '[]',
    signed_requests  BOOLEAN NOT NULL DEFAULT 0,
    credit_limit     INTEGER CHECK (credit_limit >= 0),
    rate_limit_rps   INTEGER CHECK (rate_limit_rps > 0),
    rate_limit_burst INTEGER CHECK (rate_limit_burst > 0),
    created_at       DATETIME NOT NULL,
    updated_at       DATETIME NOT NULL,
    last_used_at     DATETIME
);
CREATE INDEX tokens_account_created ON tokens (account_id, created_at, id);
CREATE UNIQUE INDEX tokens_one_secret ON tokens (account_id) WHERE kind = 'secret';

CREATE TABLE token_keys (
    hash       BLOB PRIMARY KEY CHECK (length(hash) = 32),
    token_id   TEXT NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    expires_at DATETIME,
    created_at DATETIME NOT NULL
);
CREATE INDEX token_keys_token ON token_keys (token_id);

-- SQLite has no NOTIFY: replicas (and a CLI in another process) are seen
-- through this table alone, which the server polls.
CREATE TABLE policy_changes (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    at     DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    change TEXT NOT NULL
);
CREATE INDEX policy_changes_at ON policy_changes (at);

-- +goose StatementBegin
CREATE TRIGGER accounts_changed AFTER UPDATE ON accounts BEGIN
    INSERT INTO policy_changes (change) VALUES ('a:' || NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER accounts_deleted AFTER DELETE ON accounts BEGIN
    INSERT INTO policy_changes (change) VALUES ('a:' || OLD.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER tokens_changed AFTER UPDATE ON tokens
WHEN json_array(OLD.account_id, OLD.user_id, OLD.kind, OLD.nickname, OLD.prefix, OLD.enabled, OLD.expires_at,
                OLD.core, OLD.premium, OLD.datasets, OLD.allowed_apis, OLD.grants, OLD.allowed_domains,
                OLD.allowed_ips, OLD.signed_requests, OLD.credit_limit, OLD.rate_limit_rps, OLD.rate_limit_burst)
  IS NOT json_array(NEW.account_id, NEW.user_id, NEW.kind, NEW.nickname, NEW.prefix, NEW.enabled, NEW.expires_at,
                NEW.core, NEW.premium, NEW.datasets, NEW.allowed_apis, NEW.grants, NEW.allowed_domains,
                NEW.allowed_ips, NEW.signed_requests, NEW.credit_limit, NEW.rate_limit_rps, NEW.rate_limit_burst)
BEGIN
    INSERT INTO policy_changes (change)
    SELECT 'h:' || lower(hex(hash)) FROM token_keys WHERE token_id = NEW.id;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER token_keys_inserted AFTER INSERT ON token_keys BEGIN
    INSERT INTO policy_changes (change) VALUES ('h:' || lower(hex(NEW.hash)));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER token_keys_updated AFTER UPDATE ON token_keys BEGIN
    INSERT INTO policy_changes (change) VALUES ('h:' || lower(hex(OLD.hash)));
    INSERT INTO policy_changes (change) VALUES ('h:' || lower(hex(NEW.hash)));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER token_keys_deleted AFTER DELETE ON token_keys BEGIN
    INSERT INTO policy_changes (change) VALUES ('h:' || lower(hex(OLD.hash)));
END;
-- +goose StatementEnd

-- +goose Down
DROP TABLE policy_changes;
DROP TABLE token_keys;
DROP TABLE tokens;
DROP TABLE users;
DROP TABLE accounts;
