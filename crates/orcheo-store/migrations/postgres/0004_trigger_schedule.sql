-- Cron triggers: the next planned tick, claimed by compare-and-set so each fires once.
ALTER TABLE triggers ADD COLUMN next_at BIGINT;
CREATE INDEX triggers_due ON triggers (kind, next_at);
