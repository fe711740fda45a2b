"""The per-frame tasks that run on the workers: one frame read, reduced, placed on the sky, measured and checked.

:mod:`.frame` is the task every frame goes through (:func:`~skylake.tasks.frame.process_file`): it calls the
narrow-field kernels (:mod:`skylake.frame`), the reduction of raw frames (:mod:`skylake.reduce`) and, for a camera
placed by a lens model, :mod:`.allsky` (forced photometry, cloud, maps and trails of an all-sky frame, on
:mod:`skylake.allsky`'s kernels). The kernels know no task; the tasks know every kernel.
"""

__all__: list[str] = []
