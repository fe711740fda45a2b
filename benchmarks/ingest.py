"""Ingest benchmark: skylake per-frame cost against bare sep and SExtractor, and its scaling on 2 workers.

Run from the repo root (one command; ``--quick`` for a smoke run; see benchmarks/README.md)::

    .venv/bin/python benchmarks/ingest.py [--quick] [--runs N] [--no-sextractor] [--no-breakdown]

Frame sets: the real SkyCamZ frames (``../shared/data/skycamz``, profile "skycamz"; skipped with a note
when absent) and synthetic 2048x2048 (~2000 stars) and 4096x4096 (~8000 stars) frames written once by
``skylake.synthetic.write_demo_night`` into a temporary directory (profile "demo").

Per frame set and method the whole set is timed ``--runs`` times; the table gives median (and min)
seconds per frame. Methods:

(a) bare sep, in this process: astropy read -> native float32 -> sep.Background -> subtract ->
    sep.extract (err = global rms) -> sep.sum_circle at the profile's 3 radii (the baseline);
(b) skylake ``ingest()`` into a fresh lake on a LocalCluster of 1 worker (started before timing),
    and in-process (``dask_client("synchronous")``);
(c) the same on 2 workers: throughput 2 workers / 1 worker;
(d) SExtractor (``source-extractor``) with the same settings, one subprocess per frame.

Then a breakdown of skylake's per-frame time (the steps of ``process_file`` and of the commit) on
one frame of the largest set.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REAL_DIR = Path(__file__).resolve().parents[2] / "shared/data/skycamz"

#: SExtractor's default.conv (3x3 "all-ground", FWHM 2 px), the same kernel skylake and bare sep use.
DEFAULT_CONV = "CONV NORM\n# 3x3 ``all-ground'' convolution mask with FWHM = 2 pixels.\n1 2 1\n2 4 2\n1 2 1\n"
SEX_PARAMS = "NUMBER\nX_IMAGE\nY_IMAGE\nFLUX_AUTO\nFLUX_APER(3)\n"
KERNEL = np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=np.float32)

GOAL_RATIO = 1.3  # skylake on 1 worker / bare sep, per frame
GOAL_SCALING = 1.8  # throughput on 2 workers / 1 worker


# -- small helpers ---------------------------------------------------------------------------------
def log(msg: str = "") -> None:
    print(msg, flush=True)


@dataclass
class Timing:
    """Repetitions of one method on one frame set (each the wall time of the whole set)."""

    n_frames: int
    times: list[float] = field(default_factory=list)
    sources_per_frame: float | None = None
    other_load: float = 0.0  # CPUs used by other processes while this was timed (CpuMeter)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.times) / self.n_frames

    @property
    def min(self) -> float:
        return min(self.times) / self.n_frames

    def line(self, label: str) -> str:
        src = f"{self.sources_per_frame:9.1f} sources/frame" if self.sources_per_frame is not None else ""
        spread = f"(runs: {', '.join(f'{t:.2f}' for t in self.times)} s per set)"
        load = f"other load {self.other_load:.2f} CPU" + (" DISTURBED" if self.other_load > NOISY_LOAD else "")
        return (f"    {label:28s} median {self.median:8.4f} s/frame   min {self.min:8.4f}   {src}  {spread}  {load}"
                + (f"  [{self.note}]" if self.note else ""))


@dataclass
class FrameSet:
    name: str
    profile: str
    paths: list[str]
    description: str
    results: dict[str, Timing] = field(default_factory=dict)


class CpuMeter:
    """CPU used on the machine by processes other than this benchmark (its workers and SExtractor
    included), between :meth:`start` and :meth:`stop`, in CPUs (1.0 = one core busy all the time).

    Another job on a 2-core machine makes every timing, and above all the 2-worker scaling,
    meaningless; the benchmark reports this so a reader can tell."""

    def __init__(self):
        import psutil

        self.psutil = psutil
        self.tck = os.sysconf("SC_CLK_TCK")

    def _busy(self) -> float:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
        return (v[0] + v[1] + v[2] + v[5] + v[6]) / self.tck  # user nice system irq softirq

    def _ours(self) -> float:
        me = self.psutil.Process()
        t = me.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in me.children(recursive=True):
            with contextlib.suppress(self.psutil.Error):
                ct = child.cpu_times()
                total += ct.user + ct.system
        return total

    def start(self) -> None:
        self.t0, self.busy0, self.ours0 = time.perf_counter(), self._busy(), self._ours()

    def stop(self) -> float:
        wall = time.perf_counter() - self.t0
        other = (self._busy() - self.busy0) - (self._ours() - self.ours0)
        return max(0.0, other / wall) if wall > 0 else 0.0

    def sample(self, seconds: float = 2.0) -> float:
        self.start()
        time.sleep(seconds)
        return self.stop()


#: Average CPUs used by other processes above which a timing is flagged as disturbed.
NOISY_LOAD = 0.15


def warm_page_cache(paths: list[str]) -> None:
    for p in paths:
        with open(p, "rb") as fh:
            while fh.read(1 << 24):
                pass


# -- (a) bare sep ----------------------------------------------------------------------------------
def bare_sep_frame(path: str, profile) -> int:
    """The baseline: what a hand-written sep script does per frame. Returns the number of detections."""
    import sep
    from astropy.io import fits

    det, phot = profile.detection, profile.photometry
    with fits.open(path, memmap=False) as hdul:
        hdu = next(h for h in hdul if h.header.get("NAXIS", 0) == 2)
        data = np.ascontiguousarray(hdu.data, dtype=np.dtype("=f4"))
    bkg = sep.Background(data, bw=det.back_size, bh=det.back_size, fw=det.back_filtersize, fh=det.back_filtersize)
    data -= bkg.back()
    kernel = KERNEL if det.filter_kernel == "default" else None
    pixstack = det.pixstack
    while True:
        sep.set_extract_pixstack(pixstack)
        sep.set_sub_object_limit(det.sub_object_limit)
        try:
            objects = sep.extract(data, det.thresh, err=bkg.globalrms, minarea=det.minarea, filter_kernel=kernel,
                                  deblend_nthresh=det.deblend_nthresh, deblend_cont=det.deblend_cont,
                                  clean=det.clean, clean_param=det.clean_param)
            break
        except Exception as exc:  # noqa: BLE001 - sep raises bare Exception
            if "pixel buffer full" in str(exc) and pixstack < det.max_pixstack:
                pixstack = min(4 * pixstack, det.max_pixstack)
                continue
            raise
    for radius in phot.aperture_radii:
        sep.sum_circle(data, objects["x"], objects["y"], radius, err=bkg.globalrms)
    return len(objects)


def time_bare_sep(fs: FrameSet, runs: int, meter: CpuMeter) -> Timing:
    from skylake.profile import load_profile

    profile = load_profile(fs.profile)
    bare_sep_frame(fs.paths[0], profile)  # warm-up
    t = Timing(len(fs.paths))
    counts = []
    meter.start()
    for _ in range(runs):
        t0 = time.perf_counter()
        counts = [bare_sep_frame(p, profile) for p in fs.paths]
        t.times.append(time.perf_counter() - t0)
    t.other_load = meter.stop()
    t.sources_per_frame = sum(counts) / len(counts)
    return t


# -- (b, c) skylake ingest ---------------------------------------------------------------------------
def time_skylake(fs: FrameSet, runs: int, client, lakes_dir: Path, label: str, meter: CpuMeter) -> Timing:
    from skylake.frame.process import process_file
    from skylake.ingest import ingest
    from skylake.lake import Lake
    from skylake.profile import load_profile

    profile = load_profile(fs.profile)
    t = Timing(len(fs.paths))

    def one(paths, tag):
        lake_path = lakes_dir / f"{fs.name}-{label}-{tag}"
        lake = Lake.init(lake_path)
        t0 = time.perf_counter()
        report = ingest(lake, paths, profile, client=client, batch_size=64, progress=False)
        dt = time.perf_counter() - t0
        shutil.rmtree(lake_path, ignore_errors=True)
        if report.ingested != len(paths):
            raise RuntimeError(f"{label} on {fs.name}: {report.ingested} of {len(paths)} frames ingested, "
                               f"rejected {report.rejected}")
        return dt, report

    # Warm-up (untimed): one frame through process_file on EVERY worker (imports, first-call costs of
    # sep/astropy/hats), then one small ingest (client-side and commit code paths).
    if client is not None:
        client.run(process_file, fs.paths[0], profile)
    one(fs.paths[:1], "warmup")
    sources = 0
    meter.start()
    for i in range(runs):
        dt, report = one(fs.paths, f"run{i}")
        t.times.append(dt)
        sources = report.sources
    t.other_load = meter.stop()
    t.sources_per_frame = sources / len(fs.paths)
    return t


# -- (d) SExtractor ----------------------------------------------------------------------------------
def find_sextractor() -> str | None:
    return shutil.which("source-extractor") or shutil.which("sex")


def ensure_sextractor() -> tuple[str | None, str]:
    """The SExtractor binary, installing the Debian package if missing. Returns (binary, note)."""
    exe = find_sextractor()
    if exe:
        return exe, ""
    apt = shutil.which("apt-get")
    if not apt:
        return None, "SExtractor is not installed and apt-get is not available: SExtractor column skipped"
    prefix = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if prefix is None:
        return None, "SExtractor is not installed and this user cannot run apt-get: SExtractor column skipped"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = prefix + [apt, "install", "-y", "-q", "source-extractor"]
    log("  installing SExtractor: " + " ".join(install))
    r = subprocess.run(install, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        log("  install failed; running apt-get update and retrying")
        subprocess.run(prefix + [apt, "update", "-q"], capture_output=True, text=True, env=env)
        r = subprocess.run(install, capture_output=True, text=True, env=env)
    exe = find_sextractor()
    if exe:
        return exe, ""
    tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
    return None, f"could not install source-extractor ({' | '.join(tail)}): SExtractor column skipped"


def sextractor_version(exe: str) -> str:
    try:
        out = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown version"


def sextractor_config(work: Path, profile) -> Path:
    """Write default.conv, the .param file and a .sex config equal to the profile's settings."""
    det, phot = profile.detection, profile.photometry
    (work / "default.conv").write_text(DEFAULT_CONV)
    (work / "bench.param").write_text(SEX_PARAMS)
    diameters = ",".join(f"{2 * r:g}" for r in phot.aperture_radii)
    conf = {
        "CATALOG_TYPE": "FITS_1.0",
        "PARAMETERS_NAME": str(work / "bench.param"),
        "DETECT_TYPE": "CCD",
        "DETECT_MINAREA": det.minarea,
        # RELATIVE: in units of the background rms. Without a weight map SExtractor's rms is the
        # global one, as skylake's (sep.extract with err=globalrms).
        "THRESH_TYPE": "RELATIVE",
        "DETECT_THRESH": det.thresh,
        "ANALYSIS_THRESH": det.thresh,
        "FILTER": "Y" if det.filter_kernel == "default" else "N",
        "FILTER_NAME": str(work / "default.conv"),
        "DEBLEND_NTHRESH": det.deblend_nthresh,
        "DEBLEND_MINCONT": det.deblend_cont,
        "CLEAN": "Y" if det.clean else "N",
        "CLEAN_PARAM": det.clean_param,
        "MASK_TYPE": "CORRECT",
        "PHOT_APERTURES": diameters,
        "PHOT_AUTOPARAMS": f"{phot.kron_factor},{phot.kron_min_radius}",
        "SATUR_LEVEL": profile.defaults.saturation,
        "GAIN": profile.defaults.gain,
        "BACK_TYPE": "AUTO",
        "BACK_SIZE": det.back_size,
        "BACK_FILTERSIZE": det.back_filtersize,
        "BACKPHOTO_TYPE": "GLOBAL",
        "CHECKIMAGE_TYPE": "NONE",
        "MEMORY_OBJSTACK": 3000,
        "MEMORY_PIXSTACK": det.pixstack,
        "MEMORY_BUFSIZE": 1024,
        "VERBOSE_TYPE": "QUIET",
        "WRITE_XML": "N",
        "NTHREADS": 1,
    }
    path = work / "bench.sex"
    path.write_text("".join(f"{k:16s} {v}\n" for k, v in conf.items()))
    return path


def _sextractor_count(cat: Path) -> int:
    from astropy.io import fits

    with fits.open(cat) as hdul:
        return int(hdul[-1].header["NAXIS2"])


def time_sextractor(fs: FrameSet, runs: int, exe: str, work: Path, meter: CpuMeter) -> Timing:
    from skylake.profile import load_profile

    profile = load_profile(fs.profile)
    work.mkdir(parents=True, exist_ok=True)
    config = sextractor_config(work, profile)
    cats = [work / f"{i:04d}.cat" for i in range(len(fs.paths))]

    def run(path: str, cat: Path):
        r = subprocess.run([exe, path, "-c", str(config), "-CATALOG_NAME", str(cat)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"SExtractor failed on {path}: {r.stderr.strip()[-500:]}")

    run(fs.paths[0], cats[0])  # warm-up
    t = Timing(len(fs.paths))
    meter.start()
    for _ in range(runs):
        t0 = time.perf_counter()
        for path, cat in zip(fs.paths, cats):
            run(path, cat)
        t.times.append(time.perf_counter() - t0)
    t.other_load = meter.stop()
    counts = [_sextractor_count(c) for c in cats]
    t.sources_per_frame = sum(counts) / len(counts)
    return t


# -- breakdown of skylake's per-frame time ------------------------------------------------------------
def breakdown(fs: FrameSet, runs: int, lakes_dir: Path) -> None:
    """Time the steps of ``process_file`` (replicated from skylake.frame.process/extract with skylake's
    own functions) on one frame, the sub-steps of ``extract.measure`` (same sep calls), and the commit."""
    import sep

    from skylake.frame import astrometry, extract, header, quality, reading
    from skylake.frame.process import process_file
    from skylake.ingest import commit_batch
    from skylake.lake import Lake
    from skylake.profile import load_profile

    profile = load_profile(fs.profile)
    path = fs.paths[0]
    det, phot = profile.detection, profile.photometry

    def steps() -> dict[str, float]:
        out: dict[str, float] = {}
        t = time.perf_counter()

        def lap(name):
            nonlocal t
            now = time.perf_counter()
            out[name] = now - t
            t = now

        raw = reading.read_bytes(path); lap("read bytes (fsspec)")
        reading.content_hash(raw); lap("sha256 of the file")
        image = reading.read_images(raw, profile.hdu)[0]; lap("FITS parse + native float32")
        rec = header.frame_record(image.header, profile); lap("header -> frame record")
        wcs = astrometry.celestial_wcs(image.header)
        rec.update(astrometry.footprint(wcs, image.data.shape[1], image.data.shape[0])); lap("WCS + footprint")
        data = image.data
        np.isfinite(data).all(); lap("isfinite check")
        bkg = extract.background(data, None, det); lap("sep.Background")
        back = bkg.back(); lap("bkg.back() (full-size map)")
        np.subtract(data, back, out=data); lap("subtract")
        objects, note = extract.detect(data, bkg.globalrms, None, det); lap("sep.extract (detect)")
        float(np.median(back)); lap("np.median(back) for bkg_median")
        ext = extract.Extraction(objects, back, float(bkg.globalback), float(bkg.globalrms), note)
        cols = extract.measure(data, ext, phot, gain=rec.get("gain") or 1.0); lap("extract.measure (photometry)")
        ra, dec = astrometry.pixel_to_sky(wcs, cols["x"], cols["y"]); lap("pixel_to_sky")
        astrometry.healpix29(ra, dec); lap("healpix29")
        quality.judge(quality.frame_measures(cols), profile.quality)
        quality.frame_measures(cols); lap("quality (frame_measures x2 + judge)")

        # Sub-steps of extract.measure: the same sep calls with the same arguments.
        x, y = objects["x"].astype(np.float64), objects["y"].astype(np.float64)
        a, b = objects["a"].astype(np.float64), objects["b"].astype(np.float64)
        theta = np.clip(objects["theta"].astype(np.float64), -np.pi / 2, np.pi / 2)
        odd = ~(np.isfinite(a) & np.isfinite(b) & np.isfinite(theta) & (b > 0) & (a >= b))
        a, b, theta = np.where(odd, 1.0, a), np.where(odd, 1.0, b), np.where(odd, 0.0, theta)
        err, gain = ext.globalrms, rec.get("gain") or 1.0
        t = time.perf_counter()
        kr, _ = sep.kron_radius(data, x, y, a, b, theta, 6.0); lap("  measure: sep.kron_radius")
        kr = np.where(np.isfinite(kr) & (kr > 0), kr, phot.kron_min_radius)
        scale = np.maximum(phot.kron_factor * kr, phot.kron_min_radius)
        fa, _, _ = sep.sum_ellipse(data, x, y, a, b, theta, scale, err=err, gain=gain, subpix=1)
        lap("  measure: sep.sum_ellipse (Kron flux)")
        sep.flux_radius(data, x, y, np.maximum(6.0 * a, 3.0), 0.5, normflux=fa, subpix=5)
        lap("  measure: sep.flux_radius subpix=5 (FWHM)")
        for r in phot.aperture_radii:
            sep.sum_circle(data, x, y, r, err=err, gain=gain, bkgann=tuple(phot.annulus), subpix=5)
        lap("  measure: 3x sep.sum_circle with bkgann")
        for r in phot.aperture_radii:
            sep.sum_circle(data, x, y, r, err=err, gain=gain, subpix=5)
        lap("  (for scale: 3x sum_circle WITHOUT bkgann)")
        rin, rout = phot.annulus
        sep.sum_circann(data, x, y, rin, rout, subpix=1); lap("  measure: sep.sum_circann (bkg_local)")
        out["_n"] = len(objects)
        return out

    def whole() -> tuple[float, list]:
        t0 = time.perf_counter()
        res = process_file(path, profile)
        return time.perf_counter() - t0, res

    steps()  # warm-up
    meter = CpuMeter()
    meter.start()
    samples = [steps() for _ in range(runs)]
    totals = [whole()[0] for _ in range(runs)]
    bare = []
    for _ in range(runs):
        t0 = time.perf_counter()
        bare_sep_frame(path, profile)
        bare.append(time.perf_counter() - t0)
    n_obj = samples[0].pop("_n")
    for s in samples[1:]:
        s.pop("_n")

    # Commit: process every frame of the set once, then time commit_batch into fresh lakes.
    results = [r for p in fs.paths for r in process_file(p, profile)]
    payload = len(pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL))
    commits = []
    for i in range(runs):
        lake_path = lakes_dir / f"breakdown-commit-{i}"
        lake = Lake.init(lake_path)
        t0 = time.perf_counter()
        commit_batch(lake, results)
        commits.append(time.perf_counter() - t0)
        shutil.rmtree(lake_path, ignore_errors=True)

    other_load = meter.stop()
    med = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    main_total = sum(v for k, v in med.items() if not k.startswith("  "))
    whole_med, bare_med = statistics.median(totals), statistics.median(bare)
    commit_med = statistics.median(commits) / len(fs.paths)
    log(f"\nBreakdown of skylake's per-frame time: {fs.name}, {Path(path).name}, {n_obj} detections, "
        f"median of {runs} (ms); other load {other_load:.2f} CPU" + (" DISTURBED" if other_load > NOISY_LOAD else ""))
    log(f"  {'step':48s} {'ms':>9s} {'% of process_file':>18s}")
    for k, v in med.items():
        log(f"  {k:48s} {v * 1e3:9.1f} {100 * v / whole_med:17.1f}%")
    log(f"  {'sum of the steps above (top level)':48s} {main_total * 1e3:9.1f}")
    log(f"  {'process_file() as a whole':48s} {whole_med * 1e3:9.1f}")
    log(f"  {'bare sep (a) on the same frame':48s} {bare_med * 1e3:9.1f}   "
        f"process_file / bare sep = {whole_med / bare_med:.2f}")
    log(f"  {'commit_batch, per frame (' + str(len(fs.paths)) + ' frames, 1 batch)':48s} {commit_med * 1e3:9.1f}")
    log(f"  {'pickled FrameResult per frame (worker->client)':48s} {payload / len(fs.paths) / 1e6:9.2f} MB")


# -- frame sets --------------------------------------------------------------------------------------
def make_sets(tmp: Path, quick: bool) -> list[FrameSet]:
    from skylake.synthetic import write_demo_night

    sets = []
    real = sorted(str(p) for p in REAL_DIR.glob("*.fits")) if REAL_DIR.is_dir() else []
    if real:
        if quick:
            real = real[:4]
        sets.append(FrameSet("skycamz", "skycamz", real, f"real SkyCamZ 1024x1024, {len(real)} frames"))
    else:
        log(f"NOTE: no real frames at {REAL_DIR}: the SkyCamZ frame set is skipped")
    # ~60 % of write_demo_night's n_stars land on the chip (its catalogue covers the chip's circumcircle).
    specs = [("synth-2k", (2048, 2048), 3400, 2 if quick else 8),
             ("synth-4k", (4096, 4096), 13300, 2 if quick else 6)]
    for name, shape, n_stars, n_frames in specs:
        t0 = time.perf_counter()
        truth = write_demo_night(tmp / name, n_frames=n_frames, shape=shape, n_stars=n_stars, seed=7)
        on_chip = len(truth.detections) / n_frames
        paths = sorted(str(p) for p in (tmp / name).glob("*.fits"))
        sets.append(FrameSet(name, "demo", paths,
                             f"synthetic {shape[1]}x{shape[0]}, {n_frames} frames, ~{on_chip:.0f} stars/frame"))
        log(f"  wrote {n_frames} synthetic {shape[1]}x{shape[0]} frames (~{on_chip:.0f} stars each) "
            f"in {time.perf_counter() - t0:.1f} s")
    return sets


# -- report ------------------------------------------------------------------------------------------
def _fmt(v: float | None, spec: str = ".4f", width: int = 9) -> str:
    return f"{v:{width}{spec}}" if v is not None else f"{'-':>{width}s}"


def final_table(sets: list[FrameSet], runs: int) -> None:
    cols = ["frame set", "n", "bare sep", "skylake 1w", "1w/sep", "in-proc", "2w/1w", "SExtractor",
            "sources/frame (sep, skylake, sex)"]
    log(f"\nSummary: seconds per frame, median of {runs} runs of the whole set (min in the detail lines above)")
    log(f"  goals: skylake 1 worker / bare sep <= {GOAL_RATIO}; throughput 2 workers / 1 worker >= {GOAL_SCALING}")
    head = (f"{cols[0]:10s} | {cols[1]:>3s} | {cols[2]:>9s} | {cols[3]:>10s} | {cols[4]:>10s} | {cols[5]:>9s} | "
            f"{cols[6]:>10s} | {cols[7]:>10s} | {cols[8]}")
    log(head)
    log("-" * len(head))
    disturbed = False
    for fs in sets:
        r = fs.results
        get = lambda k: r[k].median if k in r else None  # noqa: E731
        sep_t, one, sync, two, sex = get("sep"), get("1w"), get("sync"), get("2w"), get("sex")
        ratio = one / sep_t if one and sep_t else None
        scaling = one / two if one and two else None
        ratio_s = f"{ratio:5.2f} {'ok' if ratio <= GOAL_RATIO else 'NO'}  " if ratio else f"{'-':>10s}"
        scal_s = f"{scaling:5.2f} {'ok' if scaling >= GOAL_SCALING else 'NO'}  " if scaling else f"{'-':>10s}"
        src = ", ".join(f"{r[k].sources_per_frame:.0f}" if k in r else "-" for k in ("sep", "1w", "sex"))
        noisy = max((v.other_load for v in r.values()), default=0.0) > NOISY_LOAD
        disturbed |= noisy
        name = fs.name + ("*" if noisy else "")
        log(f"{name:10s} | {len(fs.paths):3d} | {_fmt(sep_t)} | {_fmt(one, width=10)} | {ratio_s:>10s} | "
            f"{_fmt(sync)} | {scal_s:>10s} | {_fmt(sex, width=10)} | {src}")
    log("columns: bare sep = (a); skylake 1w = ingest() on a 1-worker LocalCluster; 1w/sep = their ratio "
        f"(goal <= {GOAL_RATIO});\n         in-proc = ingest() with dask_client('synchronous'); 2w/1w = throughput "
        f"on 2 workers / 1 worker (goal >= {GOAL_SCALING}); SExtractor = one source-extractor process per frame.")
    if disturbed:
        log(f"  * other processes used more than {NOISY_LOAD} CPU on average during some of this set's timings "
            "(see 'other load' above): those numbers are not trustworthy; re-run on a quiet machine.")


# -- main --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer frames, 2 runs (unless --runs)")
    ap.add_argument("--runs", type=int, default=None, help="repetitions of each timing (default 5; 2 with --quick)")
    ap.add_argument("--no-sextractor", action="store_true", help="skip the SExtractor column (no install)")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the per-step breakdown of skylake's time")
    args = ap.parse_args(argv)
    runs = args.runs if args.runs is not None else (2 if args.quick else 5)
    if runs < 1:
        ap.error("--runs must be >= 1")

    warnings.filterwarnings("ignore")
    import astropy
    import dask
    import sep

    import skylake
    from skylake.ingest import dask_client

    t_start = time.perf_counter()
    log(f"skylake ingest benchmark ({'quick' if args.quick else 'full'}, {runs} runs per timing)")
    log(f"  python {platform.python_version()}, skylake {getattr(skylake, '__version__', '?')}, sep {sep.__version__}, "
        f"astropy {astropy.__version__}, numpy {np.__version__}, dask {dask.__version__}; "
        f"{os.cpu_count()} CPUs, {platform.machine()} {platform.system()}")

    meter = CpuMeter()
    idle = meter.sample(3.0)
    log(f"  CPU used by other processes before the start: {idle:.2f} CPU (of {os.cpu_count()})"
        + (f"  WARNING: the machine is busy; timings will be slow and the 2-worker scaling low" if idle > NOISY_LOAD
           else ""))
    exe, sex_note = (None, "skipped (--no-sextractor)") if args.no_sextractor else ensure_sextractor()
    log(f"  SExtractor: {exe} ({sextractor_version(exe)})" if exe else f"  NOTE: {sex_note}")

    tmp = Path(tempfile.mkdtemp(prefix="skylake-bench-"))
    try:
        lakes = tmp / "lakes"
        lakes.mkdir()
        log(f"  temporary frames and lakes in {tmp} (removed at the end)")
        sets = make_sets(tmp, args.quick)
        for fs in sets:
            warm_page_cache(fs.paths)

        for fs in sets:
            log(f"\n[{fs.name}] {fs.description}, profile {fs.profile!r}")
            fs.results["sep"] = t = time_bare_sep(fs, runs, meter)
            log(t.line("(a) bare sep, 1 process"))
            if exe:
                fs.results["sex"] = t = time_sextractor(fs, runs, exe, tmp / "sex" / fs.name, meter)
                log(t.line("(d) SExtractor, 1 process"))
            with dask_client("synchronous") as client:
                fs.results["sync"] = t = time_skylake(fs, runs, client, lakes, "sync", meter)
            log(t.line("(b) skylake in-process"))

        # One cluster per worker count, started (and warmed) before any timing, reused for every set.
        for key, workers in (("1w", 1), ("2w", 2)):
            t0 = time.perf_counter()
            with dask_client(workers=workers) as client:
                client.wait_for_workers(workers)
                log(f"\nLocalCluster with {workers} worker(s) started in {time.perf_counter() - t0:.1f} s "
                    "(not timed)")
                for fs in sets:
                    fs.results[key] = t = time_skylake(fs, runs, client, lakes, key, meter)
                    label = f"({'b' if workers == 1 else 'c'}) skylake {workers} worker{'s' if workers > 1 else ''}"
                    log(f"  [{fs.name}]")
                    log(t.line(label))

        final_table(sets, runs)
        if not args.no_breakdown and sets:
            breakdown(sets[-1], runs, lakes)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"\ntotal benchmark time {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
