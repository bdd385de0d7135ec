from qgis.core import QgsApplication


def test_provider_registered_with_icon(ada3d_provider):
    registry = QgsApplication.processingRegistry()
    assert registry.providerById("ada3d") is ada3d_provider
    assert ada3d_provider.name() == "Ada3D"
    assert not ada3d_provider.icon().isNull()


def test_every_algorithm_has_icon_and_help(ada3d_provider):
    for alg in ada3d_provider.algorithms():
        assert alg.id().startswith("ada3d:")
        assert not alg.icon().isNull(), alg.id()
        assert alg.shortHelpString(), alg.id()
        for param in alg.parameterDefinitions():
            assert param.help() or param.description(), (alg.id(), param.name())
