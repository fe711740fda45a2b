-- Schema version 3: the objects summary (variability statistics of LAKE/objects, without light curves)
-- and the maps index (LAKE/maps/_index). schemas/summary.yaml documents the columns.

CREATE TABLE objects (
    norder INTEGER,
    npix BIGINT,
    object_id BIGINT NOT NULL,
    refcat TEXT,
    ref_id BIGINT,
    ra DOUBLE PRECISION,
    dec DOUBLE PRECISION,
    pos_rms_arcsec REAL,
    n_det INTEGER,
    n_cal INTEGER,
    stats_mag TEXT,
    n INTEGER,
    mean_mag DOUBLE PRECISION,
    median_mag DOUBLE PRECISION,
    wmean_mag DOUBLE PRECISION,
    std_mag DOUBLE PRECISION,
    mad_mag DOUBLE PRECISION,
    chi2_dof DOUBLE PRECISION,
    stetson_j DOUBLE PRECISION,
    amplitude DOUBLE PRECISION,
    n_clip INTEGER,
    mean_mag_clip DOUBLE PRECISION,
    median_mag_clip DOUBLE PRECISION,
    wmean_mag_clip DOUBLE PRECISION,
    std_mag_clip DOUBLE PRECISION,
    mad_mag_clip DOUBLE PRECISION,
    chi2_dof_clip DOUBLE PRECISION,
    stetson_j_clip DOUBLE PRECISION,
    amplitude_clip DOUBLE PRECISION,
    first_mjd DOUBLE PRECISION,
    last_mjd DOUBLE PRECISION,
    PRIMARY KEY (object_id)
);

CREATE INDEX ix_objects_norder_npix ON objects (norder, npix);

CREATE TABLE maps (
    map_id TEXT NOT NULL,
    scope TEXT,
    night_min TEXT,
    night_max TEXT,
    frame_id BIGINT,
    n_frames INTEGER,
    mjd_min DOUBLE PRECISION,
    mjd_max DOUBLE PRECISION,
    nside INTEGER,
    frame_of TEXT,
    profile TEXT,
    refcat TEXT,
    calib_keys TEXT,
    zp_clear TEXT,
    min_stars INTEGER,
    n_pixels INTEGER,
    n_stars INTEGER,
    n_sky INTEGER,
    path TEXT,
    batch_id TEXT,
    created_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (map_id)
);

CREATE INDEX ix_maps_night_min ON maps (night_min);

ALTER TABLE refresh_state ADD COLUMN partitions_recomputed INTEGER;
ALTER TABLE refresh_state ADD COLUMN maps_mirrored INTEGER;
