-- An email is unique within an account, not across accounts: inviting an
-- email must not tell the inviter whether another account already has it.
-- Sign-in without an account names the oldest user with the email.

-- +goose Up
ALTER TABLE users DROP CONSTRAINT users_email_key;
ALTER TABLE users ADD CONSTRAINT users_account_email_key UNIQUE (account_id, email);
CREATE INDEX users_email ON users (email, created_at, id);

-- +goose Down
DROP INDEX users_email;
ALTER TABLE users DROP CONSTRAINT users_account_email_key;
ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);
