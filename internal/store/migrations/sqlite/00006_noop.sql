-- Postgres migration 00006 made its tokens trigger cheaper for usage
-- writes; SQLite's compares a list of columns, already cheap. This keeps
-- the two version sequences in step.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
