-- Recording usage moves last_used_at on every token used since the last
-- flush, hundreds of rows a statement. The trigger's condition turned both
-- versions of each row into JSON to find that nothing else changed, which
-- cost as much as the update itself. An update that moves last_used_at
-- (only the usage writer does, and it sets nothing else) is now told apart
-- first, by one comparison; any other update is compared as before.

-- +goose Up
DROP TRIGGER tokens_changed ON tokens;
CREATE TRIGGER tokens_changed AFTER UPDATE ON tokens
    FOR EACH ROW
    WHEN (OLD.last_used_at IS NOT DISTINCT FROM NEW.last_used_at
          AND to_jsonb(OLD) - 'last_used_at' - 'updated_at' IS DISTINCT FROM to_jsonb(NEW) - 'last_used_at' - 'updated_at')
    EXECUTE FUNCTION tollgate_token_changed();

-- +goose Down
DROP TRIGGER tokens_changed ON tokens;
CREATE TRIGGER tokens_changed AFTER UPDATE ON tokens
    FOR EACH ROW
    WHEN (to_jsonb(OLD) - 'last_used_at' - 'updated_at' IS DISTINCT FROM to_jsonb(NEW) - 'last_used_at' - 'updated_at')
    EXECUTE FUNCTION tollgate_token_changed();
