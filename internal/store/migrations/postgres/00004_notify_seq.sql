-- Notifications carry the change's place in the log ("<seq> <change>"), so
-- a replica that applied a change on notification skips it when it reads
-- the log, instead of evicting the token a second time.

-- +goose Up
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tollgate_record_change(c text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s bigint;
BEGIN
    INSERT INTO policy_changes (change) VALUES (c) RETURNING seq INTO s;
    PERFORM pg_notify('tollgate_changes', s || ' ' || c);
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tollgate_record_change(c text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO policy_changes (change) VALUES (c);
    PERFORM pg_notify('tollgate_changes', c);
END
$$;
-- +goose StatementEnd
