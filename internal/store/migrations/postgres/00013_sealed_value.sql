-- The values of publishable tokens, sealed with AES-256-GCM (package seal)
-- under the operator's key and bound to their token, so that the console
-- can show them again. Secret tokens keep only their hash (token_keys):
-- this column stays NULL for them, for tokens made before this migration,
-- and when the server has no key. Each roll rewrites it with the new value.
-- Writing it is announced by the change trigger like any column: harmless,
-- since a new or rolled token is announced anyway.

-- +goose Up
ALTER TABLE tokens ADD COLUMN sealed_value bytea;

-- +goose Down
ALTER TABLE tokens DROP COLUMN sealed_value;
