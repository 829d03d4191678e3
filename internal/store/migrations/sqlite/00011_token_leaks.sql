-- Reported leaks of token values; see the Postgres migration of the same number.

-- +goose Up
CREATE TABLE token_leaks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    token_id    TEXT NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    account_id  TEXT NOT NULL,
    reporter    TEXT NOT NULL,
    token_type  TEXT NOT NULL,
    url         TEXT NOT NULL,
    source      TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('disabled', 'rolled', 'recorded', 'already_disabled')),
    reported_at DATETIME NOT NULL
);
CREATE INDEX token_leaks_token ON token_leaks (token_id, id);
CREATE INDEX token_leaks_account ON token_leaks (account_id, id);

-- +goose Down
DROP TABLE token_leaks;
