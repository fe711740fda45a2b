"""Every stage that owns a profile section, imported: :func:`skylake.profile.load_profile` then checks them all.

A profile knows its optional sections by name only; the stage that owns a section's settings registers its check
(:func:`skylake.profile.register_section`) when its settings module is imported. Importing this module imports
them all, so that a bad value anywhere in a profile is refused when the profile is loaded, naming it, before any
frame is processed. The command line and the pipeline import it; a program that loads profiles itself should too
(a section whose stage is not imported is checked when that stage reads it).

=============  ====================================================
``[camera]``   :func:`skylake.allsky.camera.camera_of`
``[allsky]``   :func:`skylake.allsky.pipeline.allsky_settings`
``[platesolve]`` :func:`skylake.frame.solve_settings.platesolve_settings`
``[reduction]`` :func:`skylake.reduce.settings.reduction_settings`
``[ensemble]`` :func:`skylake.ensemble.stage.settings_of`
``[dia]``      :func:`skylake.dia.settings.dia_config`
=============  ====================================================
"""

from __future__ import annotations

import skylake.allsky.camera
import skylake.allsky.pipeline
import skylake.dia.settings
import skylake.ensemble.solve
import skylake.frame.solve_settings
import skylake.reduce.settings

__all__ = ["OWNERS"]

#: The module that registers each optional section's check.
OWNERS = {
    "camera": skylake.allsky.camera.__name__,
    "allsky": skylake.allsky.pipeline.__name__,
    "platesolve": skylake.frame.solve_settings.__name__,
    "reduction": skylake.reduce.settings.__name__,
    "ensemble": skylake.ensemble.solve.__name__,
    "dia": skylake.dia.settings.__name__,
}
