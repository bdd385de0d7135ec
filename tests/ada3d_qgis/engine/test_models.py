import shutil

import onnx
import pytest

from ada3d_qgis.engine import Ada3DError
from ada3d_qgis.engine.models import choose_model, shipped_models
from ada3d_qgis.engine.raster_io import ratio_fits


def _with_names(src, dst, names):
    proto = onnx.load(str(src))
    for p in proto.metadata_props:
        if p.key == "band_names":
            p.value = '["' + '", "'.join(names) + '"]'
    onnx.save(proto, str(dst))
    return dst


def test_ratio_tolerance():
    assert ratio_fits(2.0, 2) and ratio_fits(2.08, 2) and not ratio_fits(2.2, 2)
    assert not ratio_fits(4.0, 2)


def test_the_only_fitting_shipped_model_is_chosen(tmp_path, tiny_model):
    shutil.copy(tiny_model, tmp_path / "ada3d_r2_4b_tiny.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"garbage")  # skipped, not fatal
    assert [p.name for p, _ in shipped_models(tmp_path)] == ["ada3d_r2_4b_tiny.onnx"]
    choice = choose_model(4, 2.0, folder=tmp_path)
    assert choice.path.name == "ada3d_r2_4b_tiny.onnx"
    assert "4 bands" in choice.reason and "ratio 2" in choice.reason


def test_no_shipped_model_fits(tmp_path, tiny_model):
    shutil.copy(tiny_model, tmp_path / "m.onnx")
    with pytest.raises(Ada3DError, match=r"No installed model fits 3 .* ratio of 2"):
        choose_model(3, 2.0, folder=tmp_path)
    with pytest.raises(Ada3DError, match=r"ratio of 4 .*ratio 2"):
        choose_model(4, 4.0, folder=tmp_path)
    with pytest.raises(Ada3DError, match="No model is installed"):
        choose_model(4, 2.0, folder=tmp_path / "empty")


def test_band_names_break_ties(tmp_path, tiny_model):
    _with_names(tiny_model, tmp_path / "a_other.onnx", ["X1", "X2", "X3", "X4"])
    _with_names(tiny_model, tmp_path / "b_landsat.onnx", ["Blue", "Green", "Red", "NIR"])
    descriptions = ["Blue (B2)", "Green (B3)", "Red (B4)", "NIR (B5)"]
    choice = choose_model(4, 2.0, descriptions=descriptions, folder=tmp_path)
    assert choice.path.name == "b_landsat.onnx" and "2 fit" in choice.reason
    assert choose_model(4, 2.0, folder=tmp_path).path.name == "a_other.onnx"


def test_explicit_model_is_checked_against_the_input(tiny_model):
    assert choose_model(4, 2.0, explicit=tiny_model).reason.startswith("the model file given")
    with pytest.raises(Ada3DError, match=r"takes 4 multispectral bands.*but 3 are selected"):
        choose_model(3, 2.0, explicit=tiny_model)
    with pytest.raises(Ada3DError, match=r"3 times .* ratio of 2"):
        choose_model(4, 3.0, explicit=tiny_model)
