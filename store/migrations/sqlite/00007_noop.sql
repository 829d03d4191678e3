-- Postgres migration 00007 corrected its tokens trigger; SQLite's compares
-- a list of columns and needs nothing. This keeps the two version
-- sequences in step.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
