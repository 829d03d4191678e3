-- Credits and usage. credit_usage is the source of truth for what each
-- token and account spent in a period: "reserved" counts credits spent plus
-- credits leased to replicas and not yet returned, so it never exceeds a
-- limit, whatever the replicas do.

-- +goose Up
CREATE TABLE credit_usage (
    subject      text NOT NULL,        -- a token id (tok_…) or an account id (acc_…)
    period_start timestamptz NOT NULL,
    reserved     bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, period_start)
);

-- Per token per day, written in batches.
CREATE TABLE usage_daily (
    token_id   text NOT NULL,
    account_id text NOT NULL,
    day        date NOT NULL,
    requests   bigint NOT NULL DEFAULT 0,
    credits    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (token_id, day)
);
CREATE INDEX usage_daily_account ON usage_daily (account_id, day);

CREATE TABLE usage_denials (
    token_id text NOT NULL,
    day      date NOT NULL,
    code     text NOT NULL,
    count    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (token_id, day, code)
);

-- Live replicas, so that per-token rate limits can be split between them.
CREATE TABLE replicas (
    id      text PRIMARY KEY,
    seen_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE replicas;
DROP TABLE usage_denials;
DROP TABLE usage_daily;
DROP TABLE credit_usage;
