"""All-sky cameras and other frames without a header WCS.

A fisheye camera looking at the zenith is described by a :class:`~skylake.allsky.camera.CameraModel`
(lens projection, zenith pixel, rotation, parity, focal length, pixel size, a small radial
distortion) and a :class:`~skylake.allsky.camera.Site`; together with the exposure time they map
pixels to altitude/azimuth and to RA/Dec. The modules are pure functions on arrays and tables:

* :mod:`.camera`: the camera model, pixel <-> (alt, az) <-> (RA, Dec), per-pixel solid angle;
* :mod:`.catalog`: reading Hipparcos, bright-star selection, catalogue alt/az at a time;
* :mod:`.fit`: :func:`~skylake.allsky.fit.fit_camera`, the robust star-matching fit of a model;
* :mod:`.photometry`: forced aperture photometry at predicted positions, cloud fraction;
* :mod:`.maps`: per-frame HEALPix transparency and sky-brightness maps, sky brightness per pixel;
* :mod:`.plots`: zenith-centred polar pictures and fit residual plots (PNG);
* :mod:`.synthetic`: synthetic all-sky frames with a known model, cloud, sky and streak;
* :mod:`.io`: reading the real cameras' frames (exposure, time) without guessing.

Conventions (everywhere in this package):

* Pixels are 0-based, numpy order: ``x`` is the column, ``y`` the row; the centre of pixel
  ``image[j, i]`` is ``(x=i, y=j)``.
* Altitude and azimuth in degrees; azimuth from North through East (N = 0, E = 90).
* Angles in degrees, lengths on the sensor in mm, solid angles in sr or arcsec^2 (named so).
* Image position angle ``psi`` of a direction: measured from image "up" (towards row 0, -y)
  towards image "left" (-x), i.e. counter-clockwise on a display with row 0 at the top
  (``imshow(origin="upper")``). A sky direction of azimuth ``az`` is at
  ``psi = parity * az + rotation``; ``parity = +1`` is the unmirrored view of the sky from below
  (North up, East left when ``rotation = 0``), ``parity = -1`` a mirrored image.
"""

from __future__ import annotations

__all__ = ["CameraModel", "Site"]


def __getattr__(name):
    if name in ("CameraModel", "Site"):
        from skylake.allsky import camera

        return getattr(camera, name)
    raise AttributeError(name)
