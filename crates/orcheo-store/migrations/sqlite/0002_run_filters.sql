-- Listing a workflow's runs in one status (dashboards, drain checks) without scanning all of them.
CREATE INDEX runs_by_workflow_status ON runs (workflow_id, status, created_at);
