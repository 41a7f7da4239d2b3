"""reproduce recipes: cifar-modern against cifar-paper over seeds, and cifar-modern less one ingredient at a time,
reported at the final iteration with the EMA's error where the recipe keeps one (issue 42)."""

import json

import pytest

from resnetlab.cli.main import main
from resnetlab.experiments import recipes, recipes_report
from resnetlab.training.config import configure
from resnetlab.training.recipes import RECIPES


def test_every_setting_cifar_modern_changes_is_an_ingredient_and_its_ablation_gives_the_papers_value():
    common = dict(model="cifar_resnet20", data="-", out="-", iters=16000)
    paper, modern = configure("cifar-paper", **common), configure("cifar-modern", **common)
    changed = {k for k in RECIPES["cifar-modern"] if getattr(paper, k) != getattr(modern, k)}
    owned = {k for keys in recipes.INGREDIENTS.values() for k in keys}
    # the EMA's own horizon means nothing without the EMA; the error-based warm-up ("auto") is off below depth 110
    assert changed - owned == {"model_ema_decay", "warmup"}
    for ingredient, keys in recipes.INGREDIENTS.items():
        ablated = configure("cifar-modern", **common, **recipes.without(ingredient).settings(16000))
        assert all(getattr(ablated, k) == getattr(paper, k) for k in keys), ingredient
        assert all(getattr(ablated, k) == getattr(modern, k) for k in changed - set(keys)), ingredient
    assert configure("cifar-modern", **common, **recipes.without("cosine-warmup").settings(16000)).milestones == [8000, 12000]


def test_ablate_names_are_checked():
    assert recipes.parse_ablations("none") == [] and len(recipes.parse_ablations("all")) == len(recipes.INGREDIENTS)
    assert recipes.parse_ablations("mixup, ema") == ["mixup", "ema"]
    with pytest.raises(ValueError, match="--ablate takes all, none or some of label-smoothing"):
        recipes.parse_ablations("mixupp")


def test_sentences_call_a_difference_only_beyond_twice_its_noise():
    row = dict(depth=20, without="", seeds=3, std=0.004, trained_mean=0.0, averaged=False, train_loss=0.0)
    paper = {**row, "variant": "paper", "recipe": "cifar-paper", "mean": 0.134}
    close = {**row, "variant": "modern", "recipe": "cifar-modern", "mean": 0.130}  # 0.4 point < 2*0.4*sqrt(2/3)
    assert "neither recipe is shown better" in recipes_report.comparison_sentences([paper, close])
    far = {**close, "mean": 0.120}
    assert "the modern recipe is better" in recipes_report.comparison_sentences([paper, far])
    ablated = {**row, "variant": "modern-no-mixup", "recipe": "cifar-modern", "without": "mixup", "seeds": 1,
               "std": 0.0, "mean": 0.135}
    said = recipes_report.ablation_sentences([paper, far, ablated], 20)
    assert "without mixup 13.50% (+1.50 beyond)" in said and "helps (mixup)" in said


def test_fit_sentences_tell_underfitting_from_overfitting_beyond_the_noise():
    row = dict(depth=20, without="", seeds=3, std=0.004, trained_mean=0.0, averaged=False, train_loss=0.0)
    paper = {**row, "variant": "paper", "recipe": "cifar-paper", "mean": 0.1385, "train_error_clean": 0.066,
             "train_error_runs": 1, "fit_gap": 0.072}
    modern = {**row, "variant": "modern", "recipe": "cifar-modern", "seeds": 1, "mean": 0.166,
              "train_error_clean": 0.136, "train_error_runs": 1, "fit_gap": 0.030}
    said = recipes_report.fit_sentences([paper, modern])
    assert "13.60%" in said and "6.60%" in said and "3.00 points for cifar-modern, 7.20 for" in said
    assert "it underfits, its regularization" in said
    overfit = {**modern, "train_error_clean": 0.02, "fit_gap": 0.146}
    assert "fits its training images as well or better and generalizes less" in recipes_report.fit_sentences(
        [paper, overfit])
    assert recipes_report.fit_sentences([paper, {**modern, "train_error_clean": None}]) == ""


def test_reproduce_recipes_end_to_end(tiny_cifar, tmp_path, capsys):
    data = str(tiny_cifar)
    paper = tmp_path / "table6"
    assert main(["reproduce", "cifar", "--out", str(paper), "--depths", "8", "--nets", "resnet", "--iters", "4",
                 "--data", data, "--device", "cpu"]) == 0
    out = tmp_path / "recipes"
    args = ["reproduce", "recipes", "--out", str(out), "--depths", "8", "--seeds", "1", "--iters", "4", "--ablate",
            "ema", "--paper-runs", str(paper), "--data", data, "--device", "cpu"]
    assert main(args) == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "cifar_resnet8-modern-no-ema-seed0", "cifar_resnet8-modern-seed0"]  # the paper recipe's run is table6's
    rows = {r["variant"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    modern = json.loads((out / "runs" / "cifar_resnet8-modern-seed0" / "summary.json").read_text())
    assert rows["modern"]["errors"] == [modern["final_ema_val_error"]] and rows["modern"]["averaged"]
    no_ema = json.loads((out / "runs" / "cifar_resnet8-modern-no-ema-seed0" / "summary.json").read_text())
    assert "final_ema_val_error" not in no_ema and rows["modern-no-ema"]["errors"] == [no_ema["final_val_error"]]
    config = json.loads((out / "runs" / "cifar_resnet8-modern-no-ema-seed0" / "config.json").read_text())
    assert config["model_ema"] is False and config["mixup_alpha"] == 0.2 and config["recipe"] == "cifar-modern"
    assert rows["paper"]["seeds"] == 1 and not rows["paper"]["averaged"]
    fit = json.loads((out / "runs" / "cifar_resnet8-modern-seed0" / "final_errors.json").read_text())
    split = json.loads((out / "runs" / "cifar_resnet8-modern-seed0" / "split.json").read_text())
    assert fit["train_images"] == split["train_images"] < split["train_images"] + split["val_images"]
    assert rows["modern"]["train_error_clean"] == fit["train_error"] and rows["modern"]["train_error_runs"] == 1
    assert rows["modern"]["fit_gap"] == pytest.approx(rows["modern"]["mean"] - fit["train_error"])
    report = (out / "report.md").read_text()
    assert "cifar-modern without ema" in report and "test split" in report and (out / "figure.png").stat().st_size
    assert "no difference can be told from seed noise" in report  # one seed each: nothing is claimed
    capsys.readouterr()
    assert main(args) == 0  # everything finished: read back, nothing trained
    assert capsys.readouterr().out.count("finished earlier, skipped") == 3
    assert main(args + ["--report-only"]) == 0
