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


def _guide_anchors() -> set[str]:
    """GitHub's anchors of docs/user-guide.md's headings."""
    import re

    from scripts.qgis_env import REPO

    anchors = set()
    for line in (REPO / "docs" / "user-guide.md").read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return anchors


def test_help_is_paragraphs_with_a_guide_and_stated_defaults(ada3d_provider):
    """The help panel keeps line breaks: no paragraph may be hard-wrapped; the
    Help button opens the user guide's section; advanced defaults are stated."""
    anchors = _guide_anchors()
    for alg in ada3d_provider.algorithms():
        assert "\n" not in alg.shortHelpString().strip(), alg.id()
        url = alg.helpUrl()
        assert url.startswith("https://") and "docs/user-guide.md#" in url, alg.id()
        assert url.split("#")[1] in anchors, (alg.id(), url)
    alg = QgsApplication.processingRegistry().algorithmById("ada3d:pansharpen")
    labels = {p.name(): p.description() for p in alg.parameterDefinitions()}
    assert labels["TILE_SIZE"].endswith(
        "(0 = the model's, 256 px, 224 px for the band-agnostic models)")
    assert labels["OVERLAP"].endswith("(0 = the model's, 14 px at ratio 2, 16 px at ratio 4)")
    assert "every panchromatic pixel whose centre" in alg.shortHelpString()
