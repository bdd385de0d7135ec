"""Enum values whose spelling differs between QGIS 3.22 and QGIS 4 (Qt6).

QGIS moved several class-scoped enums into ``Qgis`` (3.26 and 3.36) and
QGIS 4 drops the old places, while 3.22 has only the old ones; everything
else the plugin uses is spelled the same way in both (scoped Qt enums,
``Qgis.MessageLevel``, ``exec()``), so it is written directly.
"""

from __future__ import annotations

from qgis.core import (
    Qgis,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProperty,
)


def _pick(new_owner: object, new_path: str, old_owner: object, old_path: str):
    """``new_owner.<new_path>`` where this QGIS has it, else ``old_owner.<old_path>``."""
    for owner, path in ((new_owner, new_path), (old_owner, old_path)):
        value = owner
        try:
            for name in path.split("."):
                value = getattr(value, name)
        except AttributeError:
            continue
        return value
    raise AttributeError(f"neither Qgis.{new_path} nor {old_path} exists in this QGIS")


#: Integer type of a numeric Processing parameter (Qgis enum since 3.26).
NUMBER_INTEGER = _pick(
    Qgis, "ProcessingNumberParameterType.Integer", QgsProcessingParameterNumber, "Type.Integer"
)
#: Floating-point type of a numeric Processing parameter.
NUMBER_DOUBLE = _pick(
    Qgis, "ProcessingNumberParameterType.Double", QgsProcessingParameterNumber, "Type.Double"
)
#: A file (not folder) parameter (Qgis enum since 3.36).
FILE_BEHAVIOR_FILE = _pick(
    Qgis, "ProcessingFileParameterBehavior.File", QgsProcessingParameterFile, "Behavior.File"
)
#: The "advanced" flag of a Processing parameter (Qgis enum since 3.36).
PARAMETER_FLAG_ADVANCED = _pick(
    Qgis,
    "ProcessingParameterFlag.Advanced",
    QgsProcessingParameterDefinition,
    "Flag.FlagAdvanced",
)
#: A property holding a fixed value (Qgis enum since 3.36).
PROPERTY_STATIC = _pick(Qgis, "PropertyType.Static", QgsProperty, "Type.StaticProperty")
