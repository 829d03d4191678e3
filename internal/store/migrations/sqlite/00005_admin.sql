-- Sessions and the audit log; see the Postgres migration of the same number.

-- +goose Up
CREATE TABLE sessions (
    id_hash    BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf       TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    expires_at DATETIME NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    ip         TEXT NOT NULL,
    details    TEXT NOT NULL DEFAULT '{}',
    at         DATETIME NOT NULL
);
CREATE INDEX audit_log_account ON audit_log (account_id, id);

-- +goose Down
DROP TABLE audit_log;
DROP TABLE sessions;
