-- When the broadcaster plans to go live next (Unix seconds); NULL: not
-- scheduled. Shown on the viewer site's home and stream pages.
ALTER TABLE streams ADD COLUMN scheduled_at BIGINT;
