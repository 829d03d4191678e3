-- Signing secrets, sealed; see the Postgres migration of the same number.
-- The change trigger lists its columns, so it is remade with the new one.

-- +goose Up
ALTER TABLE tokens ADD COLUMN signing_secret BLOB;

DROP TRIGGER tokens_changed;
-- +goose StatementBegin
CREATE TRIGGER tokens_changed AFTER UPDATE ON tokens
WHEN json_array(OLD.account_id, OLD.user_id, OLD.kind, OLD.nickname, OLD.prefix, OLD.enabled, OLD.expires_at,
                OLD.core, OLD.premium, OLD.datasets, OLD.allowed_apis, OLD.grants, OLD.allowed_domains,
                OLD.allowed_ips, OLD.signed_requests, OLD.credit_limit, OLD.rate_limit_rps, OLD.rate_limit_burst,
                hex(OLD.signing_secret))
  IS NOT json_array(NEW.account_id, NEW.user_id, NEW.kind, NEW.nickname, NEW.prefix, NEW.enabled, NEW.expires_at,
                NEW.core, NEW.premium, NEW.datasets, NEW.allowed_apis, NEW.grants, NEW.allowed_domains,
                NEW.allowed_ips, NEW.signed_requests, NEW.credit_limit, NEW.rate_limit_rps, NEW.rate_limit_burst,
                hex(NEW.signing_secret))
BEGIN
    INSERT INTO policy_changes (change)
    SELECT 'h:' || lower(hex(hash)) FROM token_keys WHERE token_id = NEW.id;
END;
-- +goose StatementEnd

-- +goose Down
ALTER TABLE tokens DROP COLUMN signing_secret;
