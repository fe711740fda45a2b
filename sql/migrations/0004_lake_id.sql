-- Schema version 4: the summary database records which lake it mirrors (LAKE/_skylake/lake.json
-- lake_id), so a refresh of another lake into it is refused instead of mixing two lakes' rows.
-- A database migrated from version 3 has NULL here until its next refresh records the lake refreshed
-- into it. schemas/summary.yaml documents the columns.

ALTER TABLE refresh_state ADD COLUMN lake_id TEXT;
ALTER TABLE refresh_state ADD COLUMN lake_url TEXT;
