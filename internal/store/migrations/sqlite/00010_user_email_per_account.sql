-- An email is unique within an account; see the Postgres migration of the
-- same number. SQLite cannot drop a column's UNIQUE, so the table is
-- rebuilt the way SQLite's documentation prescribes: with foreign keys
-- off (which only works outside a transaction, hence NO TRANSACTION and
-- an explicit one), so that dropping the old table neither deletes the
-- sessions nor clears the tokens that refer to its users, and the
-- REFERENCES users of both tables then name the new one.

-- +goose NO TRANSACTION
-- +goose Up
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE users_new (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email         TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    password_hash TEXT NOT NULL DEFAULT '',
    created_at    DATETIME NOT NULL,
    UNIQUE (account_id, email)
);
INSERT INTO users_new (id, account_id, email, role, password_hash, created_at)
    SELECT id, account_id, email, role, password_hash, created_at FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
CREATE INDEX users_account ON users (account_id, created_at);
CREATE INDEX users_email ON users (email, created_at, id);
COMMIT;
PRAGMA foreign_keys = ON;

-- +goose Down
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE users_old (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email         TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    password_hash TEXT NOT NULL DEFAULT '',
    created_at    DATETIME NOT NULL
);
INSERT INTO users_old (id, account_id, email, role, password_hash, created_at)
    SELECT id, account_id, email, role, password_hash, created_at FROM users;
DROP TABLE users;
ALTER TABLE users_old RENAME TO users;
CREATE INDEX users_account ON users (account_id, created_at);
COMMIT;
PRAGMA foreign_keys = ON;
