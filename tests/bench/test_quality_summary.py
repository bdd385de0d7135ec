"""bench.quality_summary: the default Ada3D row against the best classical one."""

from __future__ import annotations

import json

from bench import quality_summary


def _scores(sam, ergas, q2n, qnr):
    return {"SAM": sam, "ERGAS": ergas, "Q2n": q2n, "QNR": qnr}


def test_each_measure_is_compared_with_its_own_best_classical_method(tmp_path):
    per_case = {
        f"{prefix} {n}": {
            "EXP (cubic)": _scores(2.0, 3.0, 0.80, 0.95),
            "OTB Bayes": _scores(1.8, 2.5, 0.85, 0.90),
            "Ada3D (other)": _scores(9.0, 9.0, 0.10, 0.10),
            "Ada3D (ada3d_r2_any_landsat, default)": _scores(1.5, 2.0 + n, 0.90, 0.80),
        }
        for prefix in ("L7", "L8") for n in (0, 1)
    }
    (tmp_path / "quality_r2_6b.json").write_text(json.dumps(per_case))
    for scores in per_case.values():  # at ratio 4 the default model wins on ERGAS too
        scores["Ada3D (ada3d_r2_any_landsat, default)"]["ERGAS"] = 2.0
    (tmp_path / "quality_r4.json").write_text(json.dumps(per_case))
    (tmp_path / "quality_r2_6b.md").write_text("not read")
    import sys

    argv, sys.argv = sys.argv, ["quality_summary", "--docs", str(tmp_path)]
    try:
        quality_summary.main()
    finally:
        sys.argv = argv
    text = (tmp_path / "quality_summary.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| 2, 6") or
            line.startswith("| 4, 4")]
    assert [r.split(" | ")[0] for r in rows] == [
        "| 2, 6, L7 validation", "| 2, 6, L8 scene", "| 4, 4, L7 validation", "| 4, 4, L8 scene"]
    first = rows[0]
    # The default model, not the other Ada3D row; ERGAS is the mean 2.5 over two scenes,
    # which ties OTB Bayes: not a win.
    assert "| ada3d_r2_any_landsat |" in first
    assert "1.5000 vs 1.8000 (OTB Bayes, -16.7 %)" in first
    assert "2.5000 vs 2.5000 (OTB Bayes, +0.0 %)" in first
    assert "0.9000 vs 0.8500 (OTB Bayes, +5.9 %)" in first
    assert "0.8000 vs 0.9500 (EXP (cubic), -15.8 %)" in first
    assert first.endswith("| no |") and rows[2].endswith("| yes |")
