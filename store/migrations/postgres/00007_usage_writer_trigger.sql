-- 00006 skipped the row comparison whenever last_used_at moved, taking
-- that for the usage writer; but a plain-SQL update that moved it and
-- changed a policy column in the same statement was then neither announced
-- nor logged. The usage writer now says who it is, in a setting local to
-- its transaction, and only its updates skip the comparison.

-- +goose Up
DROP TRIGGER tokens_changed ON tokens;
CREATE TRIGGER tokens_changed AFTER UPDATE ON tokens
    FOR EACH ROW
    WHEN (current_setting('tollgate.usage_writer', true) IS DISTINCT FROM 'on'
          AND to_jsonb(OLD) - 'last_used_at' - 'updated_at' IS DISTINCT FROM to_jsonb(NEW) - 'last_used_at' - 'updated_at')
    EXECUTE FUNCTION tollgate_token_changed();

-- +goose Down
DROP TRIGGER tokens_changed ON tokens;
CREATE TRIGGER tokens_changed AFTER UPDATE ON tokens
    FOR EACH ROW
    WHEN (OLD.last_used_at IS NOT DISTINCT FROM NEW.last_used_at
          AND to_jsonb(OLD) - 'last_used_at' - 'updated_at' IS DISTINCT FROM to_jsonb(NEW) - 'last_used_at' - 'updated_at')
    EXECUTE FUNCTION tollgate_token_changed();
