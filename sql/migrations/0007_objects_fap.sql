-- Schema version 7: objects carry the false-alarm probability of their chi2 with the noise model's errors and
-- the variable flag (see schemas/objects.yaml). A database migrated from version 6 has NULL here until its objects
-- are mirrored again: the lake's objects table is rebuilt once for this layout (skylake objects build --rebuild),
-- and the refresh after that rebuild replaces every partition. schemas/summary.yaml documents the columns.

ALTER TABLE objects ADD COLUMN fap DOUBLE PRECISION;
ALTER TABLE objects ADD COLUMN variable BOOLEAN;
