-- The simulcast layers a viewer session was shown (rids, comma-separated,
-- in the order first shown); NULL without simulcast.
ALTER TABLE analytics_viewer_sessions ADD COLUMN layers TEXT;
