"""Pansharpen many scenes on a Dask cluster: ``python -m ada3d_qgis.batch``.

A headless path beside the Processing algorithm, for the development
environment (it needs ``dask[distributed]``, which QGIS does not ship; dask is
imported only when a batch runs, so the plugin never needs it):

- :mod:`.manifest`: the CSV of scenes and the settings they share.
- :mod:`.tasks`: what the workers run (plan, strips, assembly into a COG).
- :mod:`.runner`: submission, progress and one result per scene.
- :mod:`.report`: the closing table.
"""
