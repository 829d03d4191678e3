-- Publishable token values, sealed; see the Postgres migration of the same
-- number. The change trigger need not list the column: it only changes
-- with prefix, which the trigger watches.

-- +goose Up
ALTER TABLE tokens ADD COLUMN sealed_value BLOB;

-- +goose Down
ALTER TABLE tokens DROP COLUMN sealed_value;
