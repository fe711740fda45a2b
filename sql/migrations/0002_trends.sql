-- Schema version 2: long-term trends (LCO longtermphotzp style). schemas/summary.yaml documents the columns.

ALTER TABLE nights ADD COLUMN k_ext DOUBLE PRECISION;
ALTER TABLE nights ADD COLUMN zp_airmass1_max DOUBLE PRECISION;
ALTER TABLE nights ADD COLUMN color_term_median REAL;
ALTER TABLE nights ADD COLUMN photometric BOOLEAN;

CREATE TABLE trend_model (
    instrument TEXT NOT NULL,
    filter TEXT NOT NULL,
    segment INTEGER NOT NULL,
    start_mjd DOUBLE PRECISION,
    end_mjd DOUBLE PRECISION,
    start_event TEXT,
    n_nights INTEGER,
    zp_start DOUBLE PRECISION,
    slope_mag_per_year DOUBLE PRECISION,
    rms REAL,
    color_term_median REAL,
    color_term_slope_per_year REAL,
    refreshed_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (instrument, filter, segment)
);

CREATE TABLE maintenance_events (
    instrument TEXT NOT NULL,
    event_date DATE NOT NULL,
    kind TEXT NOT NULL,
    note TEXT,
    PRIMARY KEY (instrument, event_date, kind)
);
