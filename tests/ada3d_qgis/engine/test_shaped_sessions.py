"""engine/shaped_sessions: CPU sessions fixed to one window shape."""

import numpy as np
from osgeo import gdal

from ada3d_qgis.engine import session as ses
from ada3d_qgis.engine.models import SHIPPED_DIR
from ada3d_qgis.engine.pipeline import FULL_WINDOWS, shared_tile_size
from ada3d_qgis.engine.shaped_sessions import KEEP, ShapedSessions, dimension_overrides

SHIPPED_R2 = SHIPPED_DIR / "ada3d_r2_4b_landsat.onnx"


def _sample_tile(sample_pan, sample_ms, size: int, x: int = 0):
    """A normalised window of the real sample: (ms (L, h, w), pan (2h, 2w))."""
    pan = gdal.Open(str(sample_pan)).ReadAsArray()[:size, x : x + size].astype(np.float32)
    ms = gdal.Open(str(sample_ms)).ReadAsArray()[:, : size // 2, x // 2 : (x + size) // 2]
    ms = ms.astype(np.float32)
    norm = lambda a: (a - a.mean()) / a.std()  # noqa: E731
    return np.stack([norm(b) for b in ms]), norm(pan)


def test_overrides_name_every_symbolic_dimension_of_the_shipped_model():
    model = ses.open_session(SHIPPED_R2, "cpu")
    feeds = {
        "ms": np.zeros((1, 4, 91, 93), np.float32),
        "pan": np.zeros((1, 1, 182, 186), np.float32),
        "context": np.zeros((1, 320), np.float32),
        "context_weight": np.zeros((1, 1), np.float32),
    }
    overrides = dimension_overrides(model.session.get_inputs(), feeds)
    assert overrides == {"batch": 1, "rows": 91, "cols": 93, "2*rows": 182, "2*cols": 186}
    # One name, two sizes: no session can take these feeds.
    feeds["context"] = np.zeros((2, 320), np.float32)
    assert dimension_overrides(model.session.get_inputs(), feeds) is None


def test_a_cpu_run_goes_through_a_session_fixed_to_its_window_with_the_same_result(
    sample_pan, sample_ms
):
    model = ses.open_session(SHIPPED_R2, "cpu")
    assert model.shaped is not None and len(model.shaped) == 0
    ms, pan = _sample_tile(sample_pan, sample_ms, 64)
    context = np.zeros(model.metadata.context_size, np.float32)
    fused, own = model.run(ms, pan, context, 0.0)
    assert len(model.shaped) == 1
    # The general session, run directly, gives the same numbers.
    general = model.session.run(list(ses.OUTPUTS), {
        "ms": ms[None], "pan": pan[None, None], "context": context[None],
        "context_weight": np.zeros((1, 1), np.float32)})
    np.testing.assert_allclose(fused, general[0][0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(own, general[1][0], rtol=0, atol=1e-5)
    assert np.abs(fused).max() > 0.5
    # A second window of the same shape reuses that session; another shape opens one.
    model.run(*_sample_tile(sample_pan, sample_ms, 64, x=64), context, 0.0)
    assert len(model.shaped) == 1
    model.run(*_sample_tile(sample_pan, sample_ms, 48), context, 0.0)
    assert len(model.shaped) == 2


class _Input:
    def __init__(self, name, shape):
        self.name, self.shape = name, shape


def _lease_once(shaped, rows):
    with shaped.lease({"ms": np.zeros((1, 4, rows, 8), np.float32)}) as session:
        return session


def test_at_most_keep_shapes_stay_open_and_a_failed_open_falls_back():
    opened = []

    def open_with(overrides):
        if overrides["rows"] == 13:
            raise RuntimeError("onnxruntime refused")
        opened.append(dict(overrides))
        return object()

    shaped = ShapedSessions([_Input("ms", ["batch", 4, "rows", "cols"])], open_with)
    sessions = [_lease_once(shaped, r) for r in range(1, KEEP + 2)]
    assert len(set(map(id, sessions))) == KEEP + 1 and len(shaped) == KEEP
    assert opened[0] == {"batch": 1, "rows": 1, "cols": 8}
    # The most recent shapes are kept: the last one comes back without a new open.
    again = _lease_once(shaped, KEEP + 1)
    assert again is sessions[-1] and len(opened) == KEEP + 1
    # onnxruntime refusing the overrides means: run the general session (None),
    # and it is not asked again for that shape.
    assert _lease_once(shaped, 13) is None and _lease_once(shaped, 13) is None
    assert len(opened) == KEEP + 1


def test_runs_in_flight_at_once_each_get_their_own_session_and_give_it_back():
    opened = []

    def open_with(overrides):
        opened.append(object())
        return opened[-1]

    shaped = ShapedSessions([_Input("ms", ["batch", 4, "rows", "cols"])], open_with)
    feeds = {"ms": np.zeros((1, 4, 6, 8), np.float32)}
    with shaped.lease(feeds) as first, shaped.lease(feeds) as second:
        assert first is not None and second is not None and first is not second
        assert shaped.sessions() == 0
    assert shaped.sessions() == 2 and len(shaped) == 1
    # Later runs take the idle sessions back: no new open.
    with shaped.lease(feeds) as third:
        assert third in (first, second)
    assert len(opened) == 2
    # A session leased while the shapes are closed is not taken back.
    with shaped.lease(feeds) as fourth:
        shaped.clear()
    assert fourth is not None and shaped.sessions() == 0


def test_two_worker_threads_run_one_shape_in_two_sessions_with_the_same_result(
    sample_pan, sample_ms
):
    from concurrent.futures import ThreadPoolExecutor

    model = ses.open_session(SHIPPED_R2, "cpu")
    context = np.zeros(model.metadata.context_size, np.float32)
    tiles = [_sample_tile(sample_pan, sample_ms, 64, x=x) for x in (0, 64, 128, 192)]
    alone = [model.run(ms, pan, context, 0.0)[0] for ms, pan in tiles]
    assert model.shaped.sessions() == 1
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda t: model.run(t[0], t[1], context, 0.0)[0], tiles))
    assert model.shaped.sessions() <= 2 and len(model.shaped) == 1
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_two_tiles_in_flight_get_whole_windows_more_share_their_area():
    assert FULL_WINDOWS == 2
    assert shared_tile_size(256, 1, 14, 2) == 256
    assert shared_tile_size(256, 2, 14, 2) == 256
    # Four in flight: half the area each, rounded up to the ratio.
    assert shared_tile_size(256, 4, 14, 2) == 182
    assert shared_tile_size(256, 4, 16, 4) == 184
    # Never below four overlaps.
    assert shared_tile_size(64, 4, 14, 2) == 56


def test_pass_one_s_session_is_closed_when_pass_two_runs_other_windows(sample_pan, sample_ms):
    from ada3d_qgis.engine.pipeline import TilePlan, release_context_shape
    from ada3d_qgis.engine.tiling import tile_grid

    model = ses.open_session(SHIPPED_R2, "cpu")
    context = np.zeros(model.metadata.context_size, np.float32)
    model.run(*_sample_tile(sample_pan, sample_ms, 64), context, 0.0)
    assert len(model.shaped) == 1
    same = tile_grid(256, 256, 64, 14, 2)
    release_context_shape(model, TilePlan(64, 14, same, same[:1], 1))
    assert len(model.shaped) == 1  # pass 2 runs the same windows: kept
    other = tile_grid(256, 256, 96, 14, 2)
    release_context_shape(model, TilePlan(96, 14, other, same[:1], 1))
    assert len(model.shaped) == 0
    # The next window opens its session again and runs as before.
    fused, _ = model.run(*_sample_tile(sample_pan, sample_ms, 64), context, 0.0)
    assert len(model.shaped) == 1 and np.abs(fused).max() > 0.5
