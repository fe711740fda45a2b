-- Schema version 6: objects carry what an incremental update merges (the extremes and the weighted
-- mean's error) and how many points their order statistics describe (n_exact; see schemas/objects.yaml).
-- A database migrated from version 5 has NULL here until its objects are mirrored again: the lake's
-- objects table is rebuilt once for this layout (skylake objects build --rebuild), and the refresh after
-- that rebuild replaces every partition. schemas/summary.yaml documents the columns.

ALTER TABLE objects ADD COLUMN min_mag DOUBLE PRECISION;
ALTER TABLE objects ADD COLUMN max_mag DOUBLE PRECISION;
ALTER TABLE objects ADD COLUMN wmean_mag_err DOUBLE PRECISION;
ALTER TABLE objects ADD COLUMN n_exact INTEGER;
