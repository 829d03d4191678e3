-- Failed console sign-ins, counted per email and per client address so
-- that attempt limits hold across every replica. Keys are SHA-256 digests:
-- an email someone mistyped (or guessed) is never stored in clear. Rows
-- older than the longest window are pruned as new ones arrive.

-- +goose Up
CREATE TABLE signin_failures (
    scope text NOT NULL CHECK (scope IN ('email', 'ip')),
    key   bytea NOT NULL CHECK (length(key) = 32),
    at    timestamptz NOT NULL
);
CREATE INDEX signin_failures_key ON signin_failures (scope, key, at);
CREATE INDEX signin_failures_at ON signin_failures (at);

-- +goose Down
DROP TABLE signin_failures;
