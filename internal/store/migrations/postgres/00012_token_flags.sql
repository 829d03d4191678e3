-- Unusual usage. Each replica adds what it counted per token per minute
-- (allowed requests, requests of a secret token from a browser, denials
-- per code) and the network ranges and sites it saw; one replica at a
-- time (an advisory lock) reads the fleet's sums and opens flags.
-- Minutes are kept for the baseline span and pruned after it.

-- +goose Up
CREATE TABLE usage_minutes (
    token_id       text NOT NULL,
    account_id     text NOT NULL,
    minute         timestamptz NOT NULL,
    requests       bigint NOT NULL DEFAULT 0,  -- allowed
    denied         bigint NOT NULL DEFAULT 0,  -- every denial, whatever the code
    secret_browser bigint NOT NULL DEFAULT 0,  -- a secret token's requests from a browser
    PRIMARY KEY (token_id, minute)
);
CREATE INDEX usage_minutes_minute ON usage_minutes (minute);

CREATE TABLE denial_minutes (
    token_id text NOT NULL,
    minute   timestamptz NOT NULL,
    code     text NOT NULL,
    count    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (token_id, minute, code)
);
CREATE INDEX denial_minutes_minute ON denial_minutes (minute);

-- At most a bounded number of values per token and kind (see
-- anomaly.MaxSightings): a token seen from more is too diverse for "new".
CREATE TABLE token_sightings (
    token_id   text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('network', 'site')),
    value      text NOT NULL,               -- a /24 or /48, or a Referer/Origin host
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    PRIMARY KEY (token_id, kind, value)
);

CREATE TABLE token_flags (
    id          bigserial PRIMARY KEY,
    token_id    text NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    account_id  text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('spike', 'denials', 'new_network', 'new_site', 'secret_in_browser')),
    evidence    text NOT NULL DEFAULT '{}',  -- JSON: the numbers that opened it
    opened_at   timestamptz NOT NULL,
    seen_at     timestamptz NOT NULL,        -- the last run that still saw it
    resolved_at timestamptz,
    resolved_by text
);
-- One open flag per token and kind.
CREATE UNIQUE INDEX token_flags_open ON token_flags (token_id, kind) WHERE resolved_at IS NULL;
CREATE INDEX token_flags_account ON token_flags (account_id, id);

-- +goose Down
DROP TABLE token_flags;
DROP TABLE token_sightings;
DROP TABLE denial_minutes;
DROP TABLE usage_minutes;
