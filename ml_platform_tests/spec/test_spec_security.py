"""Specs are data: attacks mounted from outside, through `ml-platform specs --dir`, are refused.

Each attack is a spec file written by an untrusted author: a derived expression or an
estimator that would run code when the spec is loaded. Every test asserts both that the
command refuses the file with a message naming the file and the key, and that the side
effect the attack aims at (a marker file) did not happen. The last tests show that an
allowed spec still loads, computes what pandas.eval computes, and that only the operator
can extend the estimator allow-list.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ml_platform.cli import main
from ml_platform.data.synthetic import generate_readmission
from ml_platform.spec import SHIPPED_SPECS_DIR, load_spec
from ml_platform.spec.expressions import derive
from ml_platform.training.pipeline import DerivedFeatures

BASE = yaml.safe_load((SHIPPED_SPECS_DIR / "readmission_risk.yaml").read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _operator_allows_nothing_extra(monkeypatch) -> None:
    monkeypatch.delenv("ML_PLATFORM_ESTIMATOR_MODULES", raising=False)


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """The file an attack would create if any part of it ran."""
    return tmp_path / "pwned"


def spec_dir(tmp_path: Path, *, derived: dict | None = None, estimator: dict | None = None) -> Path:
    raw = copy.deepcopy(BASE)
    if derived is not None:
        raw["features"]["derived"].update(derived)
    if estimator is not None:
        raw["estimator"] = estimator
    folder = tmp_path / "specs"
    folder.mkdir(exist_ok=True)
    (folder / "readmission_risk.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return folder


def refused(folder: Path, capsys) -> str:
    """Run `ml-platform specs --dir folder`; it must fail; return what it said."""
    assert main(["specs", "--dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert str(folder / "readmission_risk.yaml") in err, err
    return err


def _wrap_close_index() -> int:
    """Where os._wrap_close sits among object's subclasses in this process: the classic escape's target."""
    return [c.__name__ for c in object.__subclasses__()].index("_wrap_close")


DERIVED_ATTACKS = [
    pytest.param(
        "age.__class__.__mro__[-1].__subclasses__()[{index}].__init__.__globals__['system']('touch {marker}')",
        "attribute access at character 4",
        id="attribute-escape-to-os-system",
    ),
    pytest.param("age.__class__.__mro__[-1].__subclasses__()", "attribute access at character 4", id="attribute-mro"),
    pytest.param("__import__('os').system('touch {marker}')", "a call of '__import__'", id="dunder-import"),
    pytest.param("(lambda: __import__('os').system('touch {marker}'))()", "lambda at character 2", id="lambda"),
    pytest.param("glucose[0] + 1", "subscript at character 8", id="subscript"),
    pytest.param("open('{marker}', 'w')", "a call of 'open'", id="unlisted-function-open"),
    pytest.param("eval(\"open('{marker}', 'w')\")", "a call of 'eval'", id="unlisted-function-eval"),
    pytest.param("log1p(age).__class__", "attribute access at character 11", id="attribute-on-a-result"),
    pytest.param("[open('{marker}', 'w') for a in age]", "comprehension at character 1", id="comprehension"),
    pytest.param("f\"{{open('{marker}', 'w')}}\"", "f-string at character 1", id="f-string"),
    pytest.param("where(age > 65, *age)", "starred argument", id="starred"),
    pytest.param("log1p(x=age)", "keyword argument", id="keyword-argument"),
]


@pytest.mark.parametrize(("expression", "construct"), DERIVED_ATTACKS)
def test_derived_expression_attacks_are_refused_through_the_cli(tmp_path, marker, capsys, expression, construct):
    expression = expression.format(marker=marker, index=_wrap_close_index())
    err = refused(spec_dir(tmp_path, derived={"attack": expression}), capsys)
    assert "features.derived.attack" in err
    assert construct in err
    assert "is not allowed in a derived feature" in err
    assert not marker.exists()


ESTIMATOR_ATTACKS = [
    pytest.param("os.system", {"command": "touch {marker}"}, "is not allowed", id="os-system"),
    pytest.param("subprocess.Popen", {"args": ["touch", "{marker}"]}, "is not allowed", id="subprocess-popen"),
    pytest.param("builtins.eval", {"source": "open('{marker}', 'w')"}, "is not allowed", id="builtins-eval"),
    pytest.param("pathlib.Path", {"args": "{marker}"}, "is not allowed", id="pathlib-path"),
    pytest.param("logging.FileHandler", {"filename": "{marker}"}, "is not allowed", id="logging-filehandler"),
    pytest.param("sklearn.utils.Bunch", {"path": "{marker}"}, "is not a scikit-learn estimator class", id="bunch"),
    pytest.param(
        "sklearn.datasets._base.makedirs", {"name": "{marker}"}, "is not a scikit-learn estimator class", id="makedirs"
    ),
    pytest.param(
        "sklearn.utils._testing.check_output",
        {"args": ["touch", "{marker}"]},
        "is not a scikit-learn estimator class",
        id="check-output",
    ),
    pytest.param("sklearn.base.__builtins__", {}, "is not a scikit-learn estimator class", id="module-builtins"),
    pytest.param(
        "sklearn.linear_model.LinearRegression", {}, "task binary_classification needs a classifier", id="wrong-kind"
    ),
]


@pytest.mark.parametrize(("class_path", "params", "reason"), ESTIMATOR_ATTACKS)
def test_estimator_attacks_are_refused_through_the_cli(tmp_path, marker, capsys, class_path, params, reason):
    params = yaml.safe_load(yaml.safe_dump(params).replace("{marker}", str(marker)))
    err = refused(spec_dir(tmp_path, estimator={"class": class_path, "params": params}), capsys)
    assert f"estimator.class '{class_path}' {reason}" in err or f"estimator.class: {reason}" in err, err
    assert not marker.exists()


def test_estimator_params_that_are_not_plain_data_are_refused(tmp_path, marker, capsys):
    estimator = {"class": "sklearn.linear_model.LogisticRegression", "params": {"C": {"nested": [1, {2, 3}]}}}
    err = refused(spec_dir(tmp_path, estimator=estimator), capsys)
    assert "estimator.params.C holds a set: parameters are plain data" in err  # found inside the mapping
    assert not marker.exists()


def test_a_yaml_python_tag_in_the_params_is_refused(tmp_path, marker, capsys):
    folder = spec_dir(tmp_path)
    path = folder / "readmission_risk.yaml"
    text = path.read_text(encoding="utf-8").replace(
        "params:", f"params: !!python/object/apply:os.system ['touch {marker}']\n  old_params:", 1
    )
    path.write_text(text, encoding="utf-8")
    err = refused(folder, capsys)
    assert "not valid YAML" in err
    assert not marker.exists()


def test_a_module_outside_the_allow_list_is_never_imported(tmp_path, marker, capsys, monkeypatch):
    (tmp_path / "clinic_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Model: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    err = refused(spec_dir(tmp_path, estimator={"class": "clinic_evil.Model", "params": {}}), capsys)
    assert "estimator.class 'clinic_evil.Model' is not allowed" in err
    assert "ML_PLATFORM_ESTIMATOR_MODULES" in err
    assert not marker.exists()
    assert "clinic_evil" not in sys.modules


def test_the_attack_is_refused_by_the_installed_command_in_its_own_process(tmp_path, marker):
    folder = spec_dir(tmp_path, derived={"attack": f"__import__('os').system('touch {marker}')"})
    done = subprocess.run(
        [sys.executable, "-m", "ml_platform.cli", "specs", "--dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert str(folder / "readmission_risk.yaml") in done.stderr
    assert "features.derived.attack" in done.stderr and "a call of '__import__'" in done.stderr
    assert not marker.exists()


def test_a_tampered_pipeline_step_does_not_evaluate_its_expression(tmp_path, marker):
    """A registered model carries its derived expressions; an edited artifact is refused the same way."""
    step = DerivedFeatures(derived={"x": f"__import__('os').system('touch {marker}')"}, inputs=["x"])
    with pytest.raises(ValueError, match="a call of '__import__'"):
        step.transform(generate_readmission(5, seed=1))
    assert not marker.exists()


# --------------------------------------------------------------------------- #
# What stays allowed
# --------------------------------------------------------------------------- #
ALLOWED = {
    "log_length_of_stay": "log1p(length_of_stay)",
    "poor_glycaemic_control": "(hba1c > 8) * 1.0",
    "frail_elderly": "(age > 75) & (charlson_index >= 3) | (prior_admissions_12m > 2)",
    "renal_load": "creatinine / (glucose + 1) - abs(systolic_bp - 120) ** 0.5",
    "emergency": "(admission_type == 'Emergency') * 1.0",
}


def test_an_allowed_spec_loads_through_the_cli_and_computes_what_pandas_eval_does(tmp_path, capsys):
    folder = spec_dir(tmp_path, derived=ALLOWED)
    assert main(["specs", "--dir", str(folder)]) == 0
    assert "readmission_risk: binary_classification" in capsys.readouterr().out
    spec = load_spec(folder / "readmission_risk.yaml")
    records = generate_readmission(400, seed=5, missingness=0.2)
    derived = derive(records, spec.features.derived)
    for name, expression in spec.features.derived.items():
        expected = pd.to_numeric(records.eval(expression, engine="python"), errors="coerce")
        pd.testing.assert_series_equal(derived[name], expected.replace([np.inf, -np.inf], np.nan), check_names=False)


def test_only_the_operator_extends_the_estimator_allow_list(tmp_path, capsys, monkeypatch):
    (tmp_path / "clinic_models.py").write_text(
        textwrap.dedent(
            """
            from sklearn.base import BaseEstimator, ClassifierMixin

            class TinyClassifier(ClassifierMixin, BaseEstimator):
                def __init__(self, depth=1):
                    self.depth = depth
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    folder = spec_dir(tmp_path, estimator={"class": "clinic_models.TinyClassifier", "params": {"depth": 3}})
    assert "is not allowed" in refused(folder, capsys)

    monkeypatch.setenv("ML_PLATFORM_ESTIMATOR_MODULES", "clinic_models_other, clinic_models")
    assert main(["specs", "--dir", str(folder)]) == 0
    assert load_spec(folder / "readmission_risk.yaml").estimator.build().depth == 3

    # A prefix allows its module and submodules, not every name that starts with the same letters.
    monkeypatch.setenv("ML_PLATFORM_ESTIMATOR_MODULES", "clinic")
    assert "is not allowed" in refused(folder, capsys)
