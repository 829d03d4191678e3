-- Leaks of token values that a secret-scanning partner (GitHub) reported,
-- and what Tollgate did about each: the console shows them on the token.
-- The value itself is never stored, only where it was found.

-- +goose Up
CREATE TABLE token_leaks (
    id          bigserial PRIMARY KEY,
    token_id    text NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    account_id  text NOT NULL,
    reporter    text NOT NULL,            -- github
    token_type  text NOT NULL,            -- the type name the reporter matched
    url         text NOT NULL,            -- where the value was found
    source      text NOT NULL,            -- content, commit, gist, npm, …
    action      text NOT NULL CHECK (action IN ('disabled', 'rolled', 'recorded', 'already_disabled')),
    reported_at timestamptz NOT NULL
);
CREATE INDEX token_leaks_token ON token_leaks (token_id, id);
CREATE INDEX token_leaks_account ON token_leaks (account_id, id);

-- +goose Down
DROP TABLE token_leaks;
