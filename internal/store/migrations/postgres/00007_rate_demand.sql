-- +goose Up
-- Each replica's recent demand (requests a second) for each rate-limited
-- token, so that replicas without a shared limiter split a limit by
-- demand rather than by head count. Rewritten by its replica every share
-- interval; rows of replicas no longer alive are ignored, then dropped.
CREATE TABLE rate_demand (
    replica_id text NOT NULL,
    subject    text NOT NULL,
    demand     double precision NOT NULL,
    PRIMARY KEY (replica_id, subject)
);
CREATE INDEX rate_demand_subject ON rate_demand (subject);

-- +goose Down
DROP TABLE rate_demand;
