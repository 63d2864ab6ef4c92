-- Polling triggers: what the last poll saw (ETag, Last-Modified, status, error), shown in the
-- API, and the keys of items already started, kept apart because they are long and internal.
ALTER TABLE triggers ADD COLUMN state TEXT;
ALTER TABLE triggers ADD COLUMN seen TEXT;
