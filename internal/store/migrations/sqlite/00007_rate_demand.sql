-- +goose Up
-- See the Postgres migration of the same number.
CREATE TABLE rate_demand (
    replica_id TEXT NOT NULL,
    subject    TEXT NOT NULL,
    demand     REAL NOT NULL,
    PRIMARY KEY (replica_id, subject)
);
CREATE INDEX rate_demand_subject ON rate_demand (subject);

-- +goose Down
DROP TABLE rate_demand;
