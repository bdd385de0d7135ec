"""bench/speed.py's report: the figures it states come from the measurements."""

from __future__ import annotations

import json

import pytest

from bench.speed import ADA3D, algorithm_seconds, scaling, write_report


def _row(method, size, seconds, rss, own=None):
    row = {"method": method, "pan_size": size, "pan_pixels": size * size, "seconds": seconds,
           "peak_rss_mib": rss, "pan_mpix_per_s": size * size / 1e6 / seconds}
    if own is not None:
        row["algorithm_seconds"] = own
    return row


def test_scaling_ratios_and_report(tmp_path):
    rows = [_row(ADA3D, 1024, 40.0, 750.0, 36.0), _row(ADA3D, 2048, 150.0, 950.0, 146.0),
            _row(ADA3D, 4096, 600.0, 960.0, 592.0), _row("OTB bayes", 1024, 1.0, 100.0)]
    s = scaling(rows, ADA3D, 1024, 4096)
    assert s["time_per_pixel_ratio"] == 600.0 / 16 / 40.0
    assert s["algorithm_time_per_pixel_ratio"] == 592.0 / 16 / 36.0
    assert s["peak_rss_ratio"] == 960.0 / 750.0
    assert scaling(rows, ADA3D, 1024, 8192) is None
    report = {"threads": 2, "matmul_macs_per_s": 75e9, "model": "m.onnx",
              "macs_per_pan_pixel": 154.1e3, "end_to_end": rows,
              "model_only": {"tile": 320, "tiles": 4, "onnxruntime_s": 12.0, "torch_s": 30.0,
                             "speedup": 2.5, "macs_per_s": 5e9, "share_of_peak": 5 / 75},
              "op_profile": {"dense": 0.2, "elementwise": 0.8, "top ops": {"Mul": 0.3}},
              "tile_size": 320, "overlap": 14, "ratio": 2}
    (tmp_path / "speed.json").write_text(json.dumps(report))
    write_report(report, tmp_path)
    text = (tmp_path / "speed.md").read_text()
    assert ("Ada3D from 1024² to 2048² PAN: time per pixel x0.938 (in the algorithm x1.014), "
            "peak RSS x1.267") in text
    assert "| Ada3D (ada3d:pansharpen) | 4096² | 600.0 | 592.0 |" in text
    assert "| OTB bayes | 1024² | 1.0 |  |" in text
    assert "Ada3D from 2048² to 4096² PAN: time per pixel x1.000 (in the algorithm x1.014)" in text
    assert "Ada3D from 1024² to 4096² PAN: time per pixel x0.938" in text
    # The plugin's tile plan for the 1022 px output of a 1024 px mosaic.
    assert "| 16 + 1 of 278² px |" in text
    assert "2.50x as fast" in text and "6.7 % of the matrix-multiply peak" in text


def test_algorithm_seconds_comes_from_the_result_line():
    out = 'Model: m.onnx\nRESULT {"outputs": {"OUTPUT": "/x.tif"}, "seconds": 12.5}\n'
    assert algorithm_seconds(out) == 12.5
    with pytest.raises(RuntimeError, match="no RESULT line"):
        algorithm_seconds("Traceback ...\n")


def test_the_report_states_the_roofline(tmp_path):
    rows = [_row(ADA3D, 1024, 40.0, 480.0, 36.0)]
    roof = {"elementwise_bandwidth": 12e9, "dense_macs": 136.5e3, "elementwise_macs": 17.6e3,
            "elementwise_bytes": 361e3, "dense_io_bytes": 16.8e3, "seconds_per_pixel": 31e-6,
            "macs_per_s": 4.97e9, "share_of_peak": 0.042, "target": 0.4,
            "elementwise_bytes_for_target": 25.1e3}
    report = {"threads": 2, "matmul_macs_per_s": 118.6e9, "model": "m.onnx",
              "macs_per_pan_pixel": 154.1e3, "end_to_end": rows,
              "model_only": {"tile": 256, "tiles": 4, "onnxruntime_s": 8.0, "torch_s": 12.0,
                             "speedup": 1.5, "macs_per_s": 5e9, "share_of_peak": 0.042},
              "op_profile": {"dense": 0.2, "elementwise": 0.8, "top ops": {"Mul": 0.3}},
              "roofline": roof, "tile_size": 256, "overlap": 14, "ratio": 2}
    write_report(report, tmp_path)
    text = (tmp_path / "speed.md").read_text()
    assert "onnxruntime's Mul streams 12.0 GB/s" in text
    assert "361.0 kB per PAN pixel for 136.5 k dense multiply-adds" in text
    assert "a pixel takes 31.00 µs: at most 4.97 GMAC/s, 4.2 % of the peak" in text
    assert "For 40 % these multiply-adds would have to come with at most 25.1 kB" in text
    # 361 kB x 4 x 256² px in 8 s.
    assert f"{361e3 * 4 * 256**2 / 8.0 / 1e9:.1f} GB/s or more" in text


def test_the_row_of_repeated_runs_is_the_median_run():
    from bench.speed import median_row

    runs = [{"seconds": 14.0, "peak_rss_mib": 600.0, "algorithm_seconds": 13.0},
            {"seconds": 12.0, "peak_rss_mib": 610.0, "algorithm_seconds": 11.0},
            {"seconds": 19.0, "peak_rss_mib": 590.0, "algorithm_seconds": 18.0}]
    row = median_row(ADA3D, 2048, runs)
    assert row["seconds"] == 14.0 and row["algorithm_seconds"] == 13.0
    assert row["peak_rss_mib"] == 600.0 and row["runs_seconds"] == [14.0, 12.0, 19.0]
    assert row["pan_mpix_per_s"] == 2048 * 2048 / 1e6 / 14.0
    # Two runs: the faster one.
    assert median_row(ADA3D, 2048, runs[:2])["seconds"] == 12.0
