"""The advanced parameters' labels name the shipped models' defaults in few words."""

from ada3d_qgis.algorithms.pansharpen import _describe_values


def test_defaults_are_named_by_ratio_or_by_model_kind_as_they_differ():
    assert _describe_values([(2, False, 256), (4, False, 256)]) == "256 px"
    assert _describe_values([(2, False, 14), (4, False, 16), (2, True, 14), (4, True, 16)]) == (
        "14 px at ratio 2, 16 px at ratio 4")
    assert _describe_values([(2, False, 256), (4, False, 256), (2, True, 224), (4, True, 224)]) \
        == "256 px, 224 px for the band-agnostic models"
    assert _describe_values([(2, False, 256), (4, True, 200), (2, True, 224)]) == "200 to 256 px"
    assert _describe_values([]) == ""
