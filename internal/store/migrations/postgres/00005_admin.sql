-- The Tokens API and console: sign-in sessions and the audit log.

-- +goose Up
CREATE TABLE sessions (
    id_hash    bytea PRIMARY KEY,          -- sha256 of the cookie's value
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf       text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    account_id text NOT NULL,
    actor      text NOT NULL,              -- usr_… or the secret token's tok_…
    action     text NOT NULL,              -- token.create, token.update, …
    target     text NOT NULL,
    ip         text NOT NULL,
    details    text NOT NULL DEFAULT '{}', -- JSON: the fields changed, never a token value
    at         timestamptz NOT NULL
);
CREATE INDEX audit_log_account ON audit_log (account_id, id);

-- +goose Down
DROP TABLE audit_log;
DROP TABLE sessions;
