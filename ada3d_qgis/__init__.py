"""Ada3D pansharpening for QGIS: a Processing provider running Ada3D ONNX models."""


def classFactory(iface):
    from .plugin import Ada3DPlugin

    return Ada3DPlugin(iface)
