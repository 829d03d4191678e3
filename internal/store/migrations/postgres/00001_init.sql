-- Tollgate's policy schema. Token values are never stored: only the SHA-256
-- of each value (token_keys.hash), so a leaked database leaks no token.

-- +goose Up
CREATE TABLE accounts (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    premium      boolean NOT NULL DEFAULT false,
    credit_quota bigint CHECK (credit_quota >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id            text PRIMARY KEY,
    account_id    text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email         text NOT NULL UNIQUE,
    role          text NOT NULL CHECK (role IN ('admin', 'member')),
    password_hash text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_account ON users (account_id, created_at);

CREATE TABLE tokens (
    id               text PRIMARY KEY,
    account_id       text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id          text REFERENCES users (id) ON DELETE SET NULL,
    kind             text NOT NULL CHECK (kind IN ('publishable', 'secret')),
    nickname         text NOT NULL,
    prefix           text NOT NULL,
    enabled          boolean NOT NULL DEFAULT true,
    expires_at       timestamptz,
    core             boolean NOT NULL DEFAULT false,
    premium          boolean NOT NULL DEFAULT false,
    datasets         jsonb NOT NULL DEFAULT '{}',
    allowed_apis     jsonb NOT NULL DEFAULT '[]',
    grants           jsonb NOT NULL DEFAULT '[]',
    allowed_domains  jsonb NOT NULL DEFAULT '[]',
    allowed_ips      jsonb NOT NULL DEFAULT '[]',
    signed_requests  boolean NOT NULL DEFAULT false,
    credit_limit     bigint CHECK (credit_limit >= 0),
    rate_limit_rps   bigint CHECK (rate_limit_rps > 0),
    rate_limit_burst bigint CHECK (rate_limit_burst > 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_used_at     timestamptz
);
-- Lists are per account, oldest first.
CREATE INDEX tokens_account_created ON tokens (account_id, created_at, id);
-- An account has at most one secret token.
CREATE UNIQUE INDEX tokens_one_secret ON tokens (account_id) WHERE kind = 'secret';

-- A token has one current key, and during a roll's grace period also the
-- previous one, which expires. Check looks keys up by hash.
CREATE TABLE token_keys (
    hash       bytea PRIMARY KEY CHECK (length(hash) = 32),
    token_id   text NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX token_keys_token ON token_keys (token_id);

-- Every change that can alter a decision is written here and announced on
-- the channel tollgate_changes, so every replica can evict what it cached:
-- 'h:<hex sha256>' for one token key, 'a:<account id>' for a whole account.
-- The table lets a replica that missed notifications catch up.
CREATE TABLE policy_changes (
    seq    bigserial PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    change text NOT NULL
);
CREATE INDEX policy_changes_at ON policy_changes (at);

-- +goose StatementBegin
CREATE FUNCTION tollgate_record_change(c text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO policy_changes (change) VALUES (c);
    PERFORM pg_notify('tollgate_changes', c);
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION tollgate_account_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tollgate_record_change('a:' || CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION tollgate_token_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tollgate_record_change('h:' || encode(k.hash, 'hex'))
       FROM token_keys k
      WHERE k.token_id = NEW.id;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION tollgate_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM tollgate_record_change('h:' || encode(OLD.hash, 'hex'));
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM tollgate_record_change('h:' || encode(NEW.hash, 'hex'));
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER accounts_changed AFTER UPDATE OR DELETE ON accounts
    FOR EACH ROW
    EXECUTE FUNCTION tollgate_account_changed();

-- last_used_at is bookkeeping, not policy: touching it must not evict.
CREATE TRIGGER tokens_changed AFTER UPDATE ON tokens
    FOR EACH ROW
    WHEN (to_jsonb(OLD) - 'last_used_at' - 'updated_at' IS DISTINCT FROM to_jsonb(NEW) - 'last_used_at' - 'updated_at')
    EXECUTE FUNCTION tollgate_token_changed();

-- Deleting a token deletes its keys (ON DELETE CASCADE), which announces them.
CREATE TRIGGER token_keys_changed AFTER INSERT OR UPDATE OR DELETE ON token_keys
    FOR EACH ROW EXECUTE FUNCTION tollgate_key_changed();

-- +goose Down
DROP TABLE policy_changes;
DROP TABLE token_keys;
DROP TABLE tokens;
DROP TABLE users;
DROP TABLE accounts;
DROP FUNCTION tollgate_key_changed();
DROP FUNCTION tollgate_token_changed();
DROP FUNCTION tollgate_account_changed();
DROP FUNCTION tollgate_record_change(text);
