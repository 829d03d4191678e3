-- +goose Up
-- An account's rate limit, shared by every token of the account beside
-- each token's own (NULL: none).
ALTER TABLE accounts ADD COLUMN rate_limit_rps INTEGER;
ALTER TABLE accounts ADD COLUMN rate_limit_burst INTEGER;

-- +goose Down
ALTER TABLE accounts DROP COLUMN rate_limit_burst;
ALTER TABLE accounts DROP COLUMN rate_limit_rps;
