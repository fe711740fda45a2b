-- Schema version 5: frames carry an all-sky camera's cloud fraction and trail count, and the nightly
-- summary counts the frames with satellite or aircraft trails (LAKE/streaks) and gives the median
-- cloud fraction (NULL for other cameras). schemas/summary.yaml documents the columns.

ALTER TABLE frames ADD COLUMN cloud_fraction REAL;
ALTER TABLE frames ADD COLUMN n_streaks INTEGER;
ALTER TABLE nights ADD COLUMN n_streak_frames INTEGER;
ALTER TABLE nights ADD COLUMN cloud_fraction_median REAL;
