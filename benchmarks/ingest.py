"""Ingest benchmark: skylake per-frame cost against bare sep and SExtractor, and its scaling on 2 workers.

Run from the repo root (one command; ``--quick`` for a smoke run; see benchmarks/README.md)::

    .venv/bin/python benchmarks/ingest.py [--quick] [--runs N] [--no-sextractor] [--no-breakdown] [--no-compare]
                                          [--wait-idle S] [--skycamz-copies N]

Frame sets: the real SkyCamZ frames (``../shared/data/skycamz``, profile "skycamz"; skipped with a note
when absent), 4 byte-distinct copies of each by default (56 frames: a night's batch, not 14 frames whose
one commit weighs ~8 ms a frame), and synthetic 2048x2048 (~2000 stars) and 4096x4096 (~8000 stars) frames
written once by ``skylake.synthetic.write_demo_night`` into a temporary directory (profile "demo").

Per frame set and method the whole set is timed ``--runs`` times; the table gives median (and min)
seconds per frame. Methods:

(a) bare sep, in this process: astropy read -> native float32 -> sep.Background -> subtract ->
    sep.extract (err = global rms) -> sep.sum_circle at the profile's 3 radii (the baseline);
(a') the same read, then skylake's science kernel alone (``frame.extract.extract`` and ``measure``: detection
    and every per-source measurement skylake stores), so that ingest's cost beyond it is the platform's;
(a'') (a') on two processes at once, half the frames each: what the two cores give the science alone;
(b) skylake ``ingest()`` into a fresh lake on a LocalCluster of 1 worker (started before timing),
    and in-process (``dask_client("synchronous")``);
(c) the same on 2 workers: throughput 2 workers / 1 worker;
(d) SExtractor (``source-extractor``) with the same settings, one subprocess per frame, measuring the columns
    skylake stores, so that the comparison is like for like: ``X_IMAGE Y_IMAGE A_IMAGE B_IMAGE BACKGROUND FLUX_AUTO
    FLUXERR_AUTO KRON_RADIUS FLUX_APER(3) FLUXERR_APER(3) FLUX_RADIUS FWHM_IMAGE FLAGS`` (:data:`SEX_PARAMS`): the
    apertures at the profile's three diameters, PHOT_AUTOPARAMS = kron_factor, kron_min_radius, PHOT_FLUXFRAC 0.5
    (FLUX_RADIUS is the half-light radius, skylake's fwhm / 2) and ``BACKPHOTO_TYPE LOCAL``, as skylake's apertures
    have a local background. SExtractor's local sky is the clipped mode of a rectangular ring around the object's
    isophotal box (grown by a quarter of its size), not a circular annulus at fixed radii: only its thickness can be
    set, and ``BACKPHOTO_THICK`` is the width of skylake's annulus (outer - inner radius: 4 px for SkyCamZ's 8-12,
    5 px for the generic 10-15). SExtractor subtracts that local sky from FLUX_AUTO (and FLUX_RADIUS's growth
    curve) too; skylake's flux_auto has the mesh background alone. Thresholds, filter, deblending and the
    background mesh are the profile's.

Then a breakdown of skylake's per-frame time: a call tree (skylake's and sep's functions, wrapped with
timers for the run) of an in-process ``ingest()`` of the largest set, next to bare sep on the same frames.
The CPU used by other processes is measured during every repetition and reported ("other load").

Last (``--no-compare`` skips it), after every timing, the column values: on up to 4 frames of each set,
skylake's science kernel as (a') runs it and SExtractor with (d)'s configuration (and each frame's gain and
saturation level as skylake reads them) on the same file; the catalogues matched by position (mutual nearest
within 1 px; SExtractor's X/Y_IMAGE are 1-based), the median and robust scatter (1.4826 MAD) of skylake -
SExtractor for each aperture magnitude, the Kron magnitude, the Kron scale (in units of a, as SExtractor's
KRON_RADIUS, and x a in px), a, the half-light radius, the FWHM and the local sky, and how often the saturated
and blended flags agree.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
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
#: The columns skylake measures (``schemas/sources.yaml``), in SExtractor's names: positions, second-moment axes,
#: mesh + local background, the Kron flux and scale, the three apertures, the half-light radius (PHOT_FLUXFRAC 0.5),
#: the FWHM and the flags.
SEX_PARAMS = "\n".join(
    [
        "NUMBER",
        "X_IMAGE",
        "Y_IMAGE",
        "A_IMAGE",
        "B_IMAGE",
        "BACKGROUND",
        "FLUX_AUTO",
        "FLUXERR_AUTO",
        "KRON_RADIUS",
        "FLUX_APER(3)",
        "FLUXERR_APER(3)",
        "FLUX_RADIUS",
        "FWHM_IMAGE",
        "FLAGS",
        "",
    ]
)
#: SExtractor's FLAGS bits compared with skylake's: 2 = blended (skylake OBJ_MERGED, 1), 4 = saturated (SATURATED, 256).
SEX_BLENDED, SEX_SATURATED = 2, 4
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
        load = f"other load <= {self.other_load:.2f} CPU" + (" DISTURBED" if self.other_load > NOISY_LOAD else "")
        return f"    {label:28s} median {self.median:8.4f} s/frame   min {self.min:8.4f}   {src}  {spread}  {load}" + (
            f"  [{self.note}]" if self.note else ""
        )


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


#: Average CPUs used by other processes above which a repetition is flagged as disturbed.
NOISY_LOAD = 0.15


class Quiet:
    """Guards repetitions against other jobs on the machine: measures the CPU other processes use
    during each repetition and, with a waiting budget (``--wait-idle SECONDS``), waits for the machine
    to be idle again and re-does a disturbed repetition. Without a budget it only reports."""

    def __init__(self, meter: CpuMeter, budget_s: float = 0.0):
        self.meter = meter
        self.budget = budget_s
        self.waited = 0.0
        self.redone = 0

    def wait_until_idle(self) -> bool:
        """Wait until other processes use < NOISY_LOAD / 2 for two 2-second samples in a row. Returns
        False (at once) when the waiting budget is spent."""
        if self.waited >= self.budget:
            return False
        t0, calm = time.perf_counter(), 0
        while calm < 2 and self.waited + (time.perf_counter() - t0) < self.budget:
            calm = calm + 1 if self.meter.sample(2.0) < NOISY_LOAD / 2 else 0
        self.waited += time.perf_counter() - t0
        return True

    def repeat(self, runs: int, fn) -> tuple[list, float]:
        """Call ``fn()`` until ``runs`` undisturbed results (or the budget is spent); returns the kept
        results and the highest other-process load seen during a kept one."""
        kept, loads = [], []
        while len(kept) < runs:
            self.meter.start()
            out = fn()
            load = self.meter.stop()
            if load > NOISY_LOAD and self.wait_until_idle():
                self.redone += 1
                continue
            kept.append(out)
            loads.append(load)
        return kept, max(loads)


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
            objects = sep.extract(
                data,
                det.thresh,
                err=bkg.globalrms,
                minarea=det.minarea,
                filter_kernel=kernel,
                deblend_nthresh=det.deblend_nthresh,
                deblend_cont=det.deblend_cont,
                clean=det.clean,
                clean_param=det.clean_param,
            )
            break
        except Exception as exc:  # noqa: BLE001 - sep raises bare Exception
            if "pixel buffer full" in str(exc) and pixstack < det.max_pixstack:
                pixstack = min(4 * pixstack, det.max_pixstack)
                continue
            raise
    for radius in phot.aperture_radii:
        sep.sum_circle(data, objects["x"], objects["y"], radius, err=bkg.globalrms)
    return len(objects)


#: Each frame's gain and saturation level as ingest reads them (the header's, else the profile's), by (path,
#: profile): read once, before any timing (:func:`kernel_levels`), so that the kernel times the science alone.
_LEVELS: dict[tuple[str, str], tuple[float, float, str]] = {}


def kernel_levels(path: str, profile) -> tuple[float, float, str]:
    """The gain [e-/ADU], saturation level [ADU] and its source ingest uses for ``path``
    (``skylake.frame.header.frame_record``), remembered for :func:`kernel_frame`."""
    key = (path, profile.name)
    if key not in _LEVELS:
        from astropy.io import fits

        from skylake.frame.header import frame_record
        from skylake.frame.reading import representable_max

        with fits.open(path, memmap=False) as hdul:
            header = next(h for h in hdul if h.header.get("NAXIS", 0) == 2).header
            rec = frame_record(header, profile, representable_max(header))
        _LEVELS[key] = (rec["gain"], rec["saturation"], rec["saturation_from"])
    return _LEVELS[key]


def kernel_columns(path: str, profile) -> dict[str, np.ndarray]:
    """Skylake's science kernel on ``path`` (what :func:`kernel_frame` times): the columns ``measure`` returns."""
    from astropy.io import fits

    from skylake.frame import extract

    gain, saturation, saturation_from = kernel_levels(path, profile)
    with fits.open(path, memmap=False) as hdul:
        hdu = next(h for h in hdul if h.header.get("NAXIS", 0) == 2)
        data = np.ascontiguousarray(hdu.data, dtype=np.dtype("=f4"))
    ext = extract.extract(data, profile.detection, saturation=saturation, saturation_from=saturation_from)
    return extract.measure(data, ext, profile.photometry, gain=gain)


def kernel_frame(path: str, profile) -> int:
    """The second baseline: the same read, then skylake's own science kernel and nothing else, i.e. the
    detection and every per-source measurement skylake stores (``frame.extract.extract`` and ``measure``:
    Kron radius and flux, half-light radius, exact-overlap apertures with their annulus background, the
    saturation and masked-pixel flags), with the gain and saturation level ingest reads from the header
    (:func:`kernel_levels`, looked up before timing). What ingest costs beyond it is the platform's: hashing,
    the header, WCS and HEALPix, quality, the pieces, the dask tasks and the commit. Returns the detections."""
    return len(kernel_columns(path, profile)["x"])


def time_bare_sep(fs: FrameSet, runs: int, quiet: Quiet, frame=bare_sep_frame) -> Timing:
    from skylake.profile import load_profile

    profile = load_profile(fs.profile)
    if frame is kernel_frame:
        for p in fs.paths:
            kernel_levels(p, profile)  # the headers' levels, not timed
    frame(fs.paths[0], profile)  # warm-up
    counts = []

    def once() -> float:
        nonlocal counts
        t0 = time.perf_counter()
        counts = [frame(p, profile) for p in fs.paths]
        return time.perf_counter() - t0

    t = Timing(len(fs.paths))
    t.times, t.other_load = quiet.repeat(runs, once)
    t.sources_per_frame = sum(counts) / len(counts)
    return t


# -- (a'') the kernel on two processes: what two cores give the science alone --------------------------------
_PAIR: dict = {}  # in each child of the pair's pool: its profile, and the barrier both meet at before timing


def _pair_setup(paths: list[str], profile_name: str, barrier) -> None:
    """A pool child's start: the profile, every frame's levels and one warm-up frame, not timed."""
    from skylake.profile import load_profile

    profile = load_profile(profile_name)
    for p in paths:
        kernel_levels(p, profile)
    kernel_frame(paths[0], profile)
    _PAIR.update(profile=profile, barrier=barrier)


def _pair_meet(_) -> None:
    _PAIR["barrier"].wait()  # both children ready: each took one of these


def _pair_half(paths: list[str]) -> int:
    return sum(kernel_frame(p, _PAIR["profile"]) for p in paths)


def time_kernel_pair(fs: FrameSet, runs: int, quiet: Quiet) -> Timing:
    """The kernel (:func:`kernel_frame`) of the set's frames on two processes at once, each half of them: the
    two cores' scaling of the science alone, the ceiling of ``2w/1w`` on this machine."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    halves = [fs.paths[0::2], fs.paths[1::2]]
    with ctx.Pool(2, initializer=_pair_setup, initargs=(fs.paths, fs.profile, ctx.Barrier(2))) as pool:
        pool.map(_pair_meet, range(2), chunksize=1)

        def once() -> float:
            t0 = time.perf_counter()
            pool.map(_pair_half, halves, chunksize=1)
            return time.perf_counter() - t0

        t = Timing(len(fs.paths))
        t.times, t.other_load = quiet.repeat(runs, once)
    return t


# -- (b, c) skylake ingest ---------------------------------------------------------------------------
def time_skylake(fs: FrameSet, runs: int, client, lakes_dir: Path, label: str, quiet: Quiet) -> Timing:
    from skylake.lake import Lake
    from skylake.pipeline import ingest
    from skylake.profile import load_profile
    from skylake.tasks.frame import process_file

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
            raise RuntimeError(
                f"{label} on {fs.name}: {report.ingested} of {len(paths)} frames ingested, rejected {report.rejected}"
            )
        return dt, report

    # Warm-up (untimed): one frame through process_file on EVERY worker (imports, first-call costs of
    # sep/astropy/hats), then one small ingest (client-side and commit code paths).
    if client is not None:
        client.run(process_file, fs.paths[0], profile)
    one(fs.paths[:1], "warmup")
    sources = 0

    def once() -> float:
        nonlocal sources
        dt, report = one(fs.paths, "run")
        sources = report.sources
        return dt

    t.times, t.other_load = quiet.repeat(runs, once)
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


def backphoto_thick(phot) -> int:
    """SExtractor's BACKPHOTO_THICK [px] nearest skylake's local annulus: its width, outer - inner radius."""
    inner, outer = phot.annulus
    return max(1, round(outer - inner))


def sextractor_config(work: Path, profile) -> Path:
    """Write default.conv, the .param file and a .sex config equal to the profile's settings: the same detection,
    and the columns skylake measures (:data:`SEX_PARAMS`) with a local background (``BACKPHOTO_TYPE LOCAL``)."""
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
        # LOCAL, as skylake's apertures: SExtractor's local sky is the clipped mode of a rectangular ring around the
        # object's isophotal box (grown by a quarter of its size on each side), BACKPHOTO_THICK pixels thick. Its
        # inner edge follows the footprint and cannot be set; the thickness is set to the width of skylake's circular
        # annulus (outer - inner radius: 4 px for SkyCamZ's 8-12 px, 5 px for the generic 10-15 px).
        "BACKPHOTO_TYPE": "LOCAL",
        "BACKPHOTO_THICK": backphoto_thick(phot),
        "PHOT_FLUXFRAC": 0.5,  # FLUX_RADIUS = the half-light radius (skylake: fwhm / 2, of flux_auto)
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


def time_sextractor(fs: FrameSet, runs: int, exe: str, work: Path, quiet: Quiet) -> Timing:
    from skylake.profile import load_profile

    profile = load_profile(fs.profile)
    work.mkdir(parents=True, exist_ok=True)
    config = sextractor_config(work, profile)
    cats = [work / f"{i:04d}.cat" for i in range(len(fs.paths))]

    def run(path: str, cat: Path):
        r = subprocess.run([exe, path, "-c", str(config), "-CATALOG_NAME", str(cat)], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"SExtractor failed on {path}: {r.stderr.strip()[-500:]}")

    run(fs.paths[0], cats[0])  # warm-up

    def once() -> float:
        t0 = time.perf_counter()
        for path, cat in zip(fs.paths, cats):
            run(path, cat)
        return time.perf_counter() - t0

    t = Timing(len(fs.paths))
    t.times, t.other_load = quiet.repeat(runs, once)
    counts = [_sextractor_count(c) for c in cats]
    t.sources_per_frame = sum(counts) / len(counts)
    return t


# -- column values: skylake's kernel against SExtractor, source by source ------------------------------------
#: Frames per set whose catalogues are compared (spread over the set: its copies of one frame are the same image).
COMPARE_FRAMES = 4
#: Match radius [px] of a skylake source and a SExtractor one (mutual nearest neighbours).
MATCH_PX = 1.0
#: skylake's S/N (flux_auto / flux_auto_err) from which a source counts as bright in the comparison.
BRIGHT_SNR = 20.0


def read_sextractor(cat: Path) -> dict[str, np.ndarray]:
    """A SExtractor FITS_1.0 catalogue's columns (FLUX_APER(3) as an (n, 3) array)."""
    from astropy.io import fits

    with fits.open(cat) as hdul:
        table = hdul[-1].data
        return {name: np.asarray(table[name], dtype=np.float64) for name in table.columns.names}


def match_xy(x1, y1, x2, y2, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j) of the pairs of (x1, y1) and (x2, y2) that are each other's nearest, within ``radius``."""
    from scipy.spatial import cKDTree

    if not len(x1) or not len(x2):
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    dist, j = cKDTree(np.c_[x2, y2]).query(np.c_[x1, y1], distance_upper_bound=radius)
    _, back = cKDTree(np.c_[x1, y1]).query(np.c_[x2, y2])
    i = np.flatnonzero(np.isfinite(dist))
    j = j[i]
    mutual = back[j] == i
    return i[mutual], j[mutual]


def _robust(d: np.ndarray) -> tuple[int, float, float]:
    """n, median and robust scatter (1.4826 MAD) of ``d``."""
    if not len(d):
        return 0, float("nan"), float("nan")
    med = float(np.median(d))
    return len(d), med, float(1.4826 * np.median(np.abs(d - med)))


def _mag_diff(f_sky: np.ndarray, f_sex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-2.5 log10(skylake / SExtractor) where both fluxes are > 0, and where that is."""
    ok = (f_sky > 0) & (f_sex > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -2.5 * np.log10(np.where(ok, f_sky, 1.0) / np.where(ok, f_sex, 1.0)), ok


def compare_columns(fs: FrameSet, exe: str, work: Path, frames: int = COMPARE_FRAMES) -> None:
    """Compare skylake's columns with SExtractor's on up to ``frames`` frames of the set, source by source.

    skylake's side is its science kernel as (a') runs it (:func:`kernel_columns`: ``frame.extract.extract`` and
    ``measure``), SExtractor's the timed configuration (:func:`sextractor_config`) with each frame's gain and
    saturation level as skylake reads them (:func:`kernel_levels`: the header's, else the profile's, capped at what
    the file can hold) given as ``-GAIN``, ``-SATUR_LEVEL`` with SExtractor's GAIN_KEY and SATUR_KEY switched off
    (it would take the header's over them). The timed configuration's profile default would flag no SkyCamZ star:
    its 50000 ADU exceed the ~35,700 a reduced SkyCamZ file holds. The catalogues are
    matched by position (mutual nearest within :data:`MATCH_PX`; SExtractor's X_IMAGE/Y_IMAGE are 1-based), and
    the median and robust scatter (1.4826 MAD) of the differences skylake - SExtractor are printed, over all
    matched sources and over skylake's S/N >= :data:`BRIGHT_SNR`."""
    from skylake.profile import load_profile

    profile = load_profile(fs.profile)
    work.mkdir(parents=True, exist_ok=True)
    config = sextractor_config(work, profile)
    step = max(1, len(fs.paths) // frames)
    paths = fs.paths[::step][:frames]
    radii = profile.photometry.aperture_radii
    n_sky = n_sex = 0
    pairs: list[tuple[dict, dict]] = []
    for k, path in enumerate(paths):
        cols = kernel_columns(path, profile)
        gain, saturation, _ = kernel_levels(path, profile)
        cat = work / f"compare-{k:02d}.cat"
        cmd = [exe, path, "-c", str(config), "-CATALOG_NAME", str(cat)]
        # the frame's levels as skylake reads them; the keywords switched off, or SExtractor takes the header's
        cmd += ["-GAIN", f"{gain:.10g}", "-SATUR_LEVEL", f"{saturation:.10g}"]
        cmd += ["-GAIN_KEY", "NOSUCHKEY", "-SATUR_KEY", "NOSUCHKEY"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"SExtractor failed on {path}: {r.stderr.strip()[-500:]}")
        sex = read_sextractor(cat)
        i, j = match_xy(cols["x"], cols["y"], sex["X_IMAGE"] - 1.0, sex["Y_IMAGE"] - 1.0, MATCH_PX)
        n_sky += len(cols["x"])
        n_sex += len(sex["X_IMAGE"])
        pairs.append(({c: np.asarray(v)[i] for c, v in cols.items()}, {c: v[j] for c, v in sex.items()}))
    sky = {c: np.concatenate([p[0][c] for p in pairs]) for c in pairs[0][0]}
    sex = {c: np.concatenate([p[1][c] for p in pairs]) for c in pairs[0][1]}
    n = len(sky["x"])
    sky = {c: v.astype(np.float64) if c != "flags" else v for c, v in sky.items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        bright = sky["flux_auto"] / sky["flux_auto_err"] >= BRIGHT_SNR

    log(
        f"\n[{fs.name}] column values, skylake - SExtractor, on {len(paths)} of the set's frames: skylake "
        f"{n_sky} sources, SExtractor {n_sex}, matched {n} ({100 * n / max(n_sky, 1):.1f} % of skylake's, "
        f"{100 * n / max(n_sex, 1):.1f} % of SExtractor's; mutual nearest within {MATCH_PX:g} px, SExtractor's "
        f"X/Y_IMAGE less 1); {int(bright.sum())} matched with skylake S/N >= {BRIGHT_SNR:g}"
    )
    log(
        f"  {'skylake column vs SExtractor column':52s} {'unit':>5s} | {'n':>6s} {'median':>8s} {'rob.sd':>7s} | "
        f"{'n':>6s} {'median':>8s} {'rob.sd':>7s}  (all matched | S/N >= {BRIGHT_SNR:g})"
    )

    def row(label: str, unit: str, d: np.ndarray, ok: np.ndarray) -> None:
        ok = ok & np.isfinite(d)
        parts = []
        for sel in (ok, ok & bright):
            m, med, sd = _robust(d[sel])
            parts.append(f"{m:6d} {med:+8.3f} {sd:7.3f}")
        log(f"  {label:52s} {unit:>5s} | {parts[0]} | {parts[1]}")

    for k, radius in enumerate(radii, start=1):
        d, ok = _mag_diff(sky[f"flux_ap{k}"], sex["FLUX_APER"][:, k - 1])
        row(f"mag flux_ap{k} vs FLUX_APER (diameter {2 * radius:g} px)", "mag", d, ok)
    d, ok = _mag_diff(sky["flux_auto"], sex["FLUX_AUTO"])
    row("mag flux_auto vs FLUX_AUTO", "mag", d, ok)
    both = (sky["kron_radius"] > 0) & (sex["KRON_RADIUS"] > 0)
    row("kron_radius vs KRON_RADIUS (units of a)", "", sky["kron_radius"] - sex["KRON_RADIUS"], both)
    d = sky["kron_radius"] * sky["a"] - sex["KRON_RADIUS"] * sex["A_IMAGE"]
    row("kron_radius x a vs KRON_RADIUS x A_IMAGE", "px", d, both)
    both = (sky["fwhm"] > 0) & (sex["FLUX_RADIUS"] > 0)
    row("fwhm / 2 vs FLUX_RADIUS (half-light radius)", "px", sky["fwhm"] / 2 - sex["FLUX_RADIUS"], both)
    both = (sky["fwhm"] > 0) & (sex["FWHM_IMAGE"] > 0)
    row("fwhm vs FWHM_IMAGE", "px", sky["fwhm"] - sex["FWHM_IMAGE"], both)
    every = np.ones(n, bool)
    row("a vs A_IMAGE", "px", sky["a"] - sex["A_IMAGE"], every)
    row("bkg + bkg_local vs BACKGROUND (local sky)", "ADU", sky["bkg"] + sky["bkg_local"] - sex["BACKGROUND"], every)

    from skylake.frame.extract import OBJ_MERGED, SATURATED

    sex_flags = sex["FLAGS"].astype(np.int64)
    for name, ours, theirs in (("saturated", SATURATED, SEX_SATURATED), ("blended", OBJ_MERGED, SEX_BLENDED)):
        a = (sky["flags"] & ours) != 0
        b = (sex_flags & theirs) != 0
        agree = float(np.mean(a == b)) if n else float("nan")
        log(
            f"  flags {name} ({ours} vs SExtractor {theirs}): agree on {100 * agree:.1f} % of the matched; "
            f"flagged by skylake {int(a.sum())}, by SExtractor {int(b.sum())}, by both {int((a & b).sum())}"
        )


# -- breakdown of skylake's per-frame time ------------------------------------------------------------
class CallTree:
    """Inclusive wall time of skylake's own functions (and sep's), by call path, while active.

    Every plain function of the skylake modules below (module-level and methods of Python classes) and
    sep's functions are wrapped for the duration of a ``with`` block and restored afterwards, so the
    breakdown follows whatever the code does today (nothing is replicated here)."""

    MODULES = (
        "skylake.ingest",
        "skylake.tasks.frame",
        "skylake.frame.reading",
        "skylake.frame.extract",
        "skylake.frame.astrometry",
        "skylake.frame.header",
        "skylake.frame.quality",
        "skylake.schema",
        "skylake.lake.lake",
        "skylake.lake.hats_meta",
        "skylake.lake.storage",
        "skylake.lake.log",
    )
    SEP = (
        "extract",
        "kron_radius",
        "sum_ellipse",
        "sum_circle",
        "sum_circann",
        "flux_radius",
        "winpos",
        "mask_ellipse",
    )

    def __init__(self):
        self.times: dict[tuple, float] = {}
        self.calls: dict[tuple, int] = {}
        self._stack: list[str] = []
        self._undo: list[tuple] = []

    def _wrap(self, fn, label: str):
        import functools

        tree = self

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            tree._stack.append(label)
            path = tuple(tree._stack)
            tree.times.setdefault(path, 0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                tree.times[path] += time.perf_counter() - t0
                tree.calls[path] = tree.calls.get(path, 0) + 1
                tree._stack.pop()

        timed.__calltree_original__ = fn
        return timed

    def _patch(self, owner, name, label):
        orig = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        self._undo.append((owner, name, orig))
        setattr(owner, name, self._wrap(orig, label))

    def __enter__(self):
        import importlib
        import inspect

        import sep

        wrapped: dict = {}
        for modname in self.MODULES:
            mod = importlib.import_module(modname)
            for name, obj in list(vars(mod).items()):
                if (
                    inspect.isfunction(obj)
                    and obj.__module__.startswith("skylake.")
                    and not hasattr(obj, "__calltree_original__")
                ):
                    self._patch(mod, name, f"{obj.__module__.removeprefix('skylake.')}.{obj.__qualname__}")
                elif inspect.isclass(obj) and obj.__module__ == modname and obj not in wrapped:
                    wrapped[obj] = True
                    for attr, member in list(vars(obj).items()):
                        if inspect.isfunction(member) and not attr.startswith("__"):
                            self._patch(obj, attr, f"{modname.removeprefix('skylake.')}.{member.__qualname__}")
        for name in self.SEP:
            if hasattr(sep, name):
                self._patch(sep, name, f"sep.{name}")
        base = sep.Background  # a Cython class: time its construction and its methods through a subclass

        class TimedBackground(base):
            pass

        for meth in ("back", "rms", "subfrom"):
            setattr(TimedBackground, meth, self._wrap(getattr(base, meth), f"sep.Background.{meth}"))
        init = self._wrap(lambda *a, **k: TimedBackground(*a, **k), "sep.Background()")
        self._undo.append((sep, "Background", base))
        sep.Background = init
        return self

    def __exit__(self, *exc):
        for owner, name, orig in reversed(self._undo):
            setattr(owner, name, orig)
        self._undo.clear()


def breakdown(fs: FrameSet, runs: int, lakes_dir: Path, quiet: Quiet) -> None:
    """Where skylake's per-frame time goes: a call tree of in-process ``ingest()`` of the whole set,
    per frame, next to bare sep on the same frames."""
    from skylake.lake import Lake
    from skylake.pipeline import ingest
    from skylake.profile import load_profile

    profile = load_profile(fs.profile)
    n = len(fs.paths)
    runs = max(1, min(runs, 3))

    def one_ingest(tag: str) -> float:
        lake_path = lakes_dir / f"breakdown-{tag}"
        lake = Lake.init(lake_path)
        t0 = time.perf_counter()
        ingest(lake, fs.paths, profile, client=None, progress=False)
        dt = time.perf_counter() - t0
        shutil.rmtree(lake_path, ignore_errors=True)
        return dt

    def traced():
        with CallTree() as tree:
            dt = one_ingest("run")
        return dt, tree

    def baseline_once(frame) -> float:
        t0 = time.perf_counter()
        for p in fs.paths:
            frame(p, profile)
        return time.perf_counter() - t0

    for p in fs.paths:
        kernel_levels(p, profile)  # the headers' levels, not timed
    kept, load1 = quiet.repeat(runs, traced)
    totals, trees = [k[0] for k in kept], [k[1] for k in kept]
    bare, load2 = quiet.repeat(runs, lambda: baseline_once(bare_sep_frame))
    kernel, load3 = quiet.repeat(runs, lambda: baseline_once(kernel_frame))
    other_load = max(load1, load2, load3)

    total = statistics.median(totals) / n
    bare_t = statistics.median(bare) / n
    kernel_t = statistics.median(kernel) / n
    paths = list(trees[0].times)
    for tr in trees[1:]:
        paths += [p for p in tr.times if p not in trees[0].times]
    med = {p: statistics.median(tr.times.get(p, 0.0) for tr in trees) / n for p in paths}
    calls = {p: trees[0].calls.get(p, 0) / n for p in paths}
    log(
        f"\nBreakdown: in-process ingest() of {fs.name} ({n} frames) traced by call path, ms per frame, median of "
        f"{runs} runs; other load <= {other_load:.2f} CPU" + (" DISTURBED" if other_load > NOISY_LOAD else "")
    )
    log(
        f"  ingest() per frame {total * 1e3:.1f} ms (traced), bare sep per frame {bare_t * 1e3:.1f} ms: "
        f"ratio {total / bare_t:.2f}; excess {1e3 * (total - bare_t):.1f} ms/frame"
    )
    log(
        f"  sep + measurements (a') per frame {kernel_t * 1e3:.1f} ms: ratio {total / kernel_t:.2f}; the platform's "
        f"excess {1e3 * (total - kernel_t):.1f} ms/frame (the measurements' own: {1e3 * (kernel_t - bare_t):.1f})"
    )
    log(
        f"  {'call path (inclusive; self = not in a listed child)':66s} {'calls':>6s} {'ms':>8s} {'self ms':>8s} "
        f"{'% ingest':>8s}"
    )
    floor = 0.004 * total  # hide what costs under 0.4 % of the frame time

    def self_time(tr: CallTree, p: tuple) -> float:
        kids = sum(v for q, v in tr.times.items() if len(q) == len(p) + 1 and q[:-1] == p)
        return tr.times.get(p, 0.0) - kids

    for p in paths:
        if med[p] < floor or len(p) > 7:
            continue
        self_t = statistics.median(self_time(tr, p) for tr in trees) / n
        label = "  " * (len(p) - 1) + p[-1]
        log(f"  {label:66s} {calls[p]:6.1f} {med[p] * 1e3:8.1f} {self_t * 1e3:8.1f} {100 * med[p] / total:7.1f}%")

    from skylake.ingest import _process
    from skylake.lake import pieces

    # what a frame task returns to the client: the sources stay on the worker, written as a piece
    lake = Lake.init(lakes_dir / "breakdown-result")
    with pieces.piece_run(lake.store) as run:
        sent = _process([(fs.paths[0], None)], profile, lake.store.location, run, lake.config.partition_order)
        size = len(pickle.dumps(sent, protocol=pickle.HIGHEST_PROTOCOL))
    line = f"  result of one frame pickled (sent worker -> client; its sources written as a piece): {size / 1e3:.1f} kB"
    if "1w" in fs.results and "sync" in fs.results:
        extra = fs.results["1w"].median - fs.results["sync"].median
        line += f"; 1-worker ingest minus in-process ingest: {extra * 1e3:+.1f} ms/frame"
    log(line)


# -- frame sets --------------------------------------------------------------------------------------
def make_sets(tmp: Path, quick: bool, copies: int = 1, synth_copies: int = 1) -> list[FrameSet]:
    from skylake.synthetic import write_demo_night
    from skylake.synthetic.frames import distinct_copies

    sets = []
    real = sorted(str(p) for p in REAL_DIR.glob("*.fits")) if REAL_DIR.is_dir() else []
    if real:
        if quick:
            if copies > 1:
                log(f"  --quick: the first 4 SkyCamZ frames, without the {copies} copies")
            real, copies = real[:4], 1
        n_real = len(real)
        if copies > 1:  # a night's batch, not 14 frames whose one commit weighs ~8 ms a frame
            real = distinct_copies(real, tmp / "skycamz", copies, tag="c")
        shown = f"{n_real} frames" + (f" x {copies} copies" if copies > 1 else "")
        sets.append(FrameSet("skycamz", "skycamz", real, f"real SkyCamZ 1024x1024, {shown}"))
    else:
        log(f"NOTE: no real frames at {REAL_DIR}: the SkyCamZ frame set is skipped")
    # ~60 % of write_demo_night's n_stars land on the chip (its catalogue covers the chip's circumcircle).
    specs = [("synth-2k", (2048, 2048), 3400, 2 if quick else 24), ("synth-4k", (4096, 4096), 13300, 2 if quick else 6)]
    for name, shape, n_stars, n_frames in specs:
        t0 = time.perf_counter()
        truth = write_demo_night(tmp / name, n_frames=n_frames, shape=shape, n_stars=n_stars, seed=7)
        on_chip = len(truth.detections) / n_frames
        paths = sorted(str(p) for p in (tmp / name).glob("*.fits"))
        shown = f"{n_frames} frames"
        if synth_copies > 1 and not quick:  # a night's batch: the run's fixed costs shared as an archive's are
            paths = distinct_copies(paths, tmp / f"{name}-copies", synth_copies, tag="c")
            shown = f"{n_frames} frames x {synth_copies} copies"
        sets.append(
            FrameSet(name, "demo", paths, f"synthetic {shape[1]}x{shape[0]}, {shown}, ~{on_chip:.0f} stars/frame")
        )
        log(
            f"  wrote {n_frames} synthetic {shape[1]}x{shape[0]} frames (~{on_chip:.0f} stars each) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
    return sets


# -- report ------------------------------------------------------------------------------------------
def _fmt(v: float | None, spec: str = ".4f", width: int = 9) -> str:
    return f"{v:{width}{spec}}" if v is not None else f"{'-':>{width}s}"


def final_table(sets: list[FrameSet], runs: int) -> None:
    log(f"\nSummary: seconds per frame, median of {runs} runs of the whole set (min in the detail lines above)")
    log(
        f"  goals: skylake 1 worker / bare sep <= {GOAL_RATIO} (1w/sep; 1w/kern against sep + the same measurements); "
        f"throughput 2 workers / 1 worker >= {GOAL_SCALING}"
    )
    head = (
        f"{'frame set':10s} | {'n':>3s} | {'bare sep':>9s} | {'sep+meas':>9s} | {'skylake 1w':>10s} | "
        f"{'1w/sep':>10s} | {'1w/kern':>10s} | {'in-proc':>9s} | {'2w/1w':>10s} | {'kern 2p/1p':>10s} | "
        f"{'SExtractor':>10s} | "
        "sources/frame (sep, skylake, sex)"
    )
    log(head)
    log("-" * len(head))
    disturbed = False

    def verdict(value, ok) -> str:
        return f"{value:5.2f} {'ok' if ok(value) else 'NO'}  " if value else f"{'-':>10s}"

    for fs in sets:
        r = fs.results
        get = lambda k, r=r: r[k].median if k in r else None  # noqa: E731
        sep_t, kern, one, sync, two, sex = (get(k) for k in ("sep", "kernel", "1w", "sync", "2w", "sex"))
        pair = get("kernel2")
        pair_s = f"{kern / pair:9.2f} " if kern and pair else f"{'-':>10s}"
        ratio_s = verdict(one / sep_t if one and sep_t else None, lambda v: v <= GOAL_RATIO)
        kern_s = verdict(one / kern if one and kern else None, lambda v: v <= GOAL_RATIO)
        scal_s = verdict(one / two if one and two else None, lambda v: v >= GOAL_SCALING)
        src = ", ".join(f"{r[k].sources_per_frame:.0f}" if k in r else "-" for k in ("sep", "1w", "sex"))
        noisy = max((v.other_load for v in r.values()), default=0.0) > NOISY_LOAD
        disturbed |= noisy
        name = fs.name + ("*" if noisy else "")
        log(
            f"{name:10s} | {len(fs.paths):3d} | {_fmt(sep_t)} | {_fmt(kern)} | {_fmt(one, width=10)} | "
            f"{ratio_s:>10s} | {kern_s:>10s} | {_fmt(sync)} | {scal_s:>10s} | {pair_s:>10s} | {_fmt(sex, width=10)} | "
            f"{src}"
        )
    log(
        "columns: bare sep = (a); sep+meas = (a'), the read and skylake's detection and measurements alone; "
        "skylake 1w = ingest() on a 1-worker LocalCluster;\n         1w/sep, 1w/kern = its ratios to (a) and (a') "
        f"(goal <= {GOAL_RATIO}); in-proc = ingest() with dask_client('synchronous'); 2w/1w = throughput "
        f"on 2 workers / 1 worker (goal >= {GOAL_SCALING});\n         kern 2p/1p = the throughput of (a') on 2 "
        "processes at once / on 1 (a''): the 2 cores' own ceiling for 2w/1w; SExtractor = one source-extractor "
        "process per frame."
    )
    if disturbed:
        log(
            f"  * other processes used more than {NOISY_LOAD} CPU on average during some of this set's timings "
            "(see 'other load' above): those numbers are not trustworthy; re-run on a quiet machine."
        )


# -- main --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer frames, 2 runs (unless --runs)")
    ap.add_argument("--runs", type=int, default=None, help="repetitions of each timing (default 5; 2 with --quick)")
    ap.add_argument("--no-sextractor", action="store_true", help="skip the SExtractor column (no install)")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the per-step breakdown of skylake's time")
    ap.add_argument(
        "--no-compare",
        action="store_true",
        help="skip the source-by-source comparison of skylake's column values with SExtractor's",
    )
    ap.add_argument(
        "--skycamz-copies",
        type=int,
        default=4,
        metavar="N",
        help="ingest N byte-distinct copies of each of the 14 real SkyCamZ frames (default 4: 56 frames, one "
        "batch of up to 64; 1: the 14 frames alone, where the batch's commit weighs more)",
    )
    ap.add_argument(
        "--synth-copies",
        type=int,
        default=1,
        metavar="N",
        help="ingest N byte-distinct copies of each synthetic frame (not with --quick)",
    )
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="on a shared machine: re-do a repetition that other processes disturbed after waiting for "
        "the machine to be idle, spending at most SECONDS waiting in all (default 0: only report)",
    )
    args = ap.parse_args(argv)
    runs = args.runs if args.runs is not None else (2 if args.quick else 5)
    if runs < 1:
        ap.error("--runs must be >= 1")
    if args.skycamz_copies < 1:
        ap.error(f"--skycamz-copies must be >= 1, not {args.skycamz_copies}")
    if args.synth_copies < 1:
        ap.error(f"--synth-copies must be >= 1, not {args.synth_copies}")

    warnings.filterwarnings("ignore")
    # The benchmark lakes hold no reference catalogue: what is timed is ingest alone, and the
    # "frames not calibrated" warning of every timed ingest is noise here.
    logging.getLogger("skylake.calib").setLevel(logging.ERROR)
    import astropy
    import dask
    import sep

    import skylake
    from skylake.runtime import dask_client

    t_start = time.perf_counter()
    log(f"skylake ingest benchmark ({'quick' if args.quick else 'full'}, {runs} runs per timing)")
    log(
        f"  python {platform.python_version()}, skylake {getattr(skylake, '__version__', '?')}, sep {sep.__version__}, "
        f"astropy {astropy.__version__}, numpy {np.__version__}, dask {dask.__version__}; "
        f"{os.cpu_count()} CPUs, {platform.machine()} {platform.system()}"
    )

    meter = CpuMeter()
    quiet = Quiet(meter, args.wait_idle)
    idle = meter.sample(3.0)
    log(
        f"  CPU used by other processes before the start: {idle:.2f} CPU (of {os.cpu_count()})"
        + (
            "  WARNING: the machine is busy; timings will be slow and the 2-worker scaling low"
            if idle > NOISY_LOAD
            else ""
        )
    )
    exe, sex_note = (None, "skipped (--no-sextractor)") if args.no_sextractor else ensure_sextractor()
    log(f"  SExtractor: {exe} ({sextractor_version(exe)})" if exe else f"  NOTE: {sex_note}")

    tmp = Path(tempfile.mkdtemp(prefix="skylake-bench-"))
    try:
        lakes = tmp / "lakes"
        lakes.mkdir()
        log(f"  temporary frames and lakes in {tmp} (removed at the end)")
        sets = make_sets(tmp, args.quick, args.skycamz_copies, args.synth_copies)
        for fs in sets:
            warm_page_cache(fs.paths)

        for fs in sets:
            log(f"\n[{fs.name}] {fs.description}, profile {fs.profile!r}")
            fs.results["sep"] = t = time_bare_sep(fs, runs, quiet)
            log(t.line("(a) bare sep, 1 process"))
            fs.results["kernel"] = t = time_bare_sep(fs, runs, quiet, frame=kernel_frame)
            log(t.line("(a') sep + measurements"))
            fs.results["kernel2"] = t = time_kernel_pair(fs, runs, quiet)
            log(t.line("(a'') the same, 2 processes"))
            if exe:
                fs.results["sex"] = t = time_sextractor(fs, runs, exe, tmp / "sex" / fs.name, quiet)
                log(t.line("(d) SExtractor, 1 process"))
            with dask_client("synchronous") as client:
                fs.results["sync"] = t = time_skylake(fs, runs, client, lakes, "sync", quiet)
            log(t.line("(b) skylake in-process"))

        # One cluster per worker count, started (and warmed) before any timing, reused for every set.
        for key, workers in (("1w", 1), ("2w", 2)):
            t0 = time.perf_counter()
            with dask_client(workers=workers) as client:
                client.wait_for_workers(workers)
                log(f"\nLocalCluster with {workers} worker(s) started in {time.perf_counter() - t0:.1f} s (not timed)")
                for fs in sets:
                    fs.results[key] = t = time_skylake(fs, runs, client, lakes, key, quiet)
                    label = f"({'b' if workers == 1 else 'c'}) skylake {workers} worker{'s' if workers > 1 else ''}"
                    log(f"  [{fs.name}]")
                    log(t.line(label))

        final_table(sets, runs)
        if not args.no_breakdown and sets:
            breakdown(sets[-1], runs, lakes, quiet)
        if exe and not args.no_compare:
            for fs in sets:  # after every timing: not timed
                compare_columns(fs, exe, tmp / "compare" / fs.name)
        elif not args.no_compare:
            log("\nNOTE: no SExtractor: the column comparison is skipped")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = time.perf_counter() - t_start
    log(
        f"\ntotal benchmark time {total:.0f} s"
        + (
            f" ({quiet.waited:.0f} s of it waiting for other jobs to finish; "
            f"{quiet.redone} disturbed repetitions re-done)"
            if quiet.budget
            else ""
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
