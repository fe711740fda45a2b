-- skylake summary database, schema version 1 (schemas/summary.yaml describes every column).
-- Portable DDL: Postgres runs it as is; SQLite accepts the same type names.
-- Applied by skylake.db.migrate in one transaction and recorded in schema_migrations.

CREATE TABLE frames (
    frame_id BIGINT NOT NULL,
    frame_key TEXT,
    path TEXT,
    hdu INTEGER,
    content_hash TEXT,
    file_size BIGINT,
    profile TEXT,
    pipeline_version TEXT,
    batch_id TEXT,
    status TEXT,
    reason TEXT,
    extract_note TEXT,
    n_sources INTEGER,
    instrument TEXT,
    filter TEXT,
    object TEXT,
    date_obs TEXT,
    mjd DOUBLE PRECISION,
    exptime REAL,
    airmass REAL,
    altitude REAL,
    azimuth REAL,
    site TEXT,
    gain REAL,
    saturation REAL,
    nx INTEGER,
    ny INTEGER,
    ra_center DOUBLE PRECISION,
    dec_center DOUBLE PRECISION,
    pixscale REAL,
    bkg_median REAL,
    bkg_rms REAL,
    src_bkg_median REAL,
    src_bkg_mad REAL,
    fwhm_median REAL,
    elongation_max REAL,
    theta_kurtosis REAL,
    flux_max_max REAL,
    processing_s REAL,
    ingested_at TIMESTAMP WITH TIME ZONE,
    night DATE,
    PRIMARY KEY (frame_id)
);

CREATE INDEX ix_frames_content_hash ON frames (content_hash);

CREATE INDEX ix_frames_night ON frames (night);

CREATE TABLE ingest_batches (
    version BIGINT NOT NULL,
    batch_id TEXT,
    operation TEXT,
    committed_at TIMESTAMP WITH TIME ZONE,
    files_added INTEGER,
    files_removed INTEGER,
    rows_added BIGINT,
    nights TEXT,
    PRIMARY KEY (version)
);

CREATE TABLE nights (
    night DATE NOT NULL,
    instrument TEXT NOT NULL,
    filter TEXT NOT NULL,
    n_frames INTEGER,
    n_ok INTEGER,
    n_rejected INTEGER,
    n_quality INTEGER,
    n_sources BIGINT,
    mjd_first DOUBLE PRECISION,
    mjd_last DOUBLE PRECISION,
    bkg_median REAL,
    fwhm_median REAL,
    n_calibrated INTEGER,
    zp_median DOUBLE PRECISION,
    zp_scatter REAL,
    zp_max DOUBLE PRECISION,
    photometric_fraction REAL,
    refreshed_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (night, instrument, filter)
);

CREATE TABLE refresh_state (
    id INTEGER NOT NULL,
    lake_version BIGINT,
    refreshed_at TIMESTAMP WITH TIME ZONE,
    nights_recomputed INTEGER,
    PRIMARY KEY (id)
);

CREATE TABLE zeropoints (
    frame_id BIGINT NOT NULL,
    refcat TEXT NOT NULL,
    calib_key TEXT NOT NULL,
    profile TEXT,
    band TEXT,
    color TEXT,
    zp_method TEXT,
    zp DOUBLE PRECISION,
    zp_fit DOUBLE PRECISION,
    zp_err REAL,
    zp_scatter REAL,
    zp_n INTEGER,
    zp_n_matched INTEGER,
    color_term REAL,
    zp_variation REAL,
    zp_status TEXT,
    zp_reason TEXT,
    airmass REAL,
    mjd DOUBLE PRECISION,
    astro_n INTEGER,
    astro_median_sep_arcsec REAL,
    astro_rms_arcsec REAL,
    batch_id TEXT,
    calibrated_at TIMESTAMP WITH TIME ZONE,
    night DATE,
    PRIMARY KEY (frame_id, refcat, calib_key)
);

CREATE INDEX ix_zeropoints_night ON zeropoints (night);
