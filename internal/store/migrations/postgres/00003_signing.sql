-- Signing secrets for tokens that require signed requests, sealed with
-- AES-256-GCM (package seal) under the operator's key. The trigger on
-- tokens already announces any change to a column it does not exclude.

-- +goose Up
ALTER TABLE tokens ADD COLUMN signing_secret bytea;

-- +goose Down
ALTER TABLE tokens DROP COLUMN signing_secret;
