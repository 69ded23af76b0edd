"""`mixkit demo` runs end to end (one epoch here) and writes what the README promises."""

import json

from mixkit.cli import main


def test_demo_writes_table_json_and_figure(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--epochs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| Two-circle | mlp |" in out and "| iris | logistic |" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["accuracy"]) == {"Two-circle", "9-class Gaussian", "iris"}
    for per_model in results["accuracy"].values():
        for accs in per_model.values():
            assert set(accs) == {"vanilla", "mixup", "mixup+GenLabel"}
            assert all(0 <= a <= 100 for a in accs.values())
    mix, gen = results["label_conflicts"]["Two-circle"]
    assert gen < mix  # GenLabel's labels follow the rings, mixup's do not
    assert (tmp_path / "decision_boundaries.png").stat().st_size > 10_000
