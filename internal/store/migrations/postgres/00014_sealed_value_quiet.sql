-- A kept publishable value (migration 00013) is not part of any policy: a
-- replica never reads it, and it changes alone only when the encryption
-- key is rotated (tollgate reseal). The whole-row comparison announced
-- those writes, so a reseal made every replica drop every publishable
-- token from its cache at once and load it again from here. It is left
-- out of the comparison, as SQLite's trigger, which lists its columns,
-- always left it out. A roll changes the value with the prefix and the
-- token's keys, which are announced.

-- +goose Up
DROP TRIGGER tokens_changed ON tokens;
CREATE TRIGGER tokens_changed AFTER UPDATE ON tokens
    FOR EACH ROW
    WHEN (current_setting('tollgate.usage_writer', true) IS DISTINCT FROM 'on'
          AND to_jsonb(OLD) - 'last_used_at' - 'updated_at' - 'sealed_value'
              IS DISTINCT FROM to_jsonb(NEW) - 'last_used_at' - 'updated_at' - 'sealed_value')
    EXECUTE FUNCTION tollgate_token_changed();

-- +goose Down
DROP TRIGGER tokens_changed ON tokens;
CREATE TRIGGER tokens_changed AFTER UPDATE ON tokens
    FOR EACH ROW
    WHEN (current_setting('tollgate.usage_writer', true) IS DISTINCT FROM 'on'
          AND to_jsonb(OLD) - 'last_used_at' - 'updated_at' IS DISTINCT FROM to_jsonb(NEW) - 'last_used_at' - 'updated_at')
    EXECUTE FUNCTION tollgate_token_changed();
