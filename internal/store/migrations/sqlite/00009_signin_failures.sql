-- Failed console sign-ins; see the Postgres migration of the same number.

-- +goose Up
CREATE TABLE signin_failures (
    scope TEXT NOT NULL CHECK (scope IN ('email', 'ip')),
    key   BLOB NOT NULL CHECK (length(key) = 32),
    at    DATETIME NOT NULL
);
CREATE INDEX signin_failures_key ON signin_failures (scope, key, at);
CREATE INDEX signin_failures_at ON signin_failures (at);

-- +goose Down
DROP TABLE signin_failures;
