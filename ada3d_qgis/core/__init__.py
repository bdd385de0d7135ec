"""Pure-numpy pieces shared by the plugin and model_export (never imports torch or QGIS)."""
