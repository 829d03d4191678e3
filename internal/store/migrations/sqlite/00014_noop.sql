-- Postgres migration 00014 leaves kept values out of its tokens trigger's
-- comparison; SQLite's lists its columns and never had the column. This
-- keeps the two version sequences in step.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
