-- Recording usage moves last_used_at on every token used since the last
-- flush, hundreds of rows a statement. The trigger's condition turned both
-- versions of each row into JSON to find that nothing else changed, which
-- cost as much as the update itself. The usage writer says who it is, in a
-- setting local to its transaction (it sets nothing but last_used_at), and
-- only its updates skip the comparison: a plain-SQL update that moves
-- last_used_at and a policy column together is still announced.

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
    WHEN (to_jsonb(OLD) - 'last_used_at' - 'updated_at' IS DISTINCT FROM to_jsonb(NEW) - 'last_used_at' - 'updated_at')
    EXECUTE FUNCTION tollgate_token_changed();
