-- Postgres migration 00004 changed its notification function; SQLite has
-- no notifications. This keeps the two version sequences in step.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
