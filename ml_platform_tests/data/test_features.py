"""Derived features: the platform's own evaluator computes exactly what pandas.eval computes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_platform.data.synthetic import generate_readmission
from ml_platform.spec.expressions import derive, parse, referenced_names


@pytest.fixture(scope="module")
def encounters() -> pd.DataFrame:
    return generate_readmission(500, seed=3, missingness=0.2)


def pandas_eval(df: pd.DataFrame, expression: str) -> pd.Series:
    expected = pd.to_numeric(df.eval(expression, engine="python"), errors="coerce")
    return expected.replace([np.inf, -np.inf], np.nan)


@pytest.mark.parametrize(
    "expression",
    [
        "log1p(length_of_stay)",
        "(hba1c > 8) * 1.0",
        "glucose / creatinine",
        "sqrt(age) - abs(systolic_bp - 120) ** 0.5",
        "charlson_index // 2 + prior_admissions_12m % 3",
        "arctan2(heart_rate, systolic_bp)",
        "-age ** 2 + +length_of_stay",
        "2 ** 3 + age",
        # & and | bind like and/or, looser than comparisons (pandas.eval, not Python)
        "(age > 65) & (charlson_index > 2)",
        "age > 65 & charlson_index > 2 | hba1c > 8",
        "age > 65 and hba1c > 8",
        "age > 65 | charlson_index > 2",
        "age > 65 or not hba1c > 8",
        # ~ and not are elementwise inversion, ~ binding like unary minus
        "~(age > 65) * 1.0",
        "~age",
        "18 < age <= 40",
        "(sex == 'F') * 1.0 + (payer != \"Medicare\")",
        "exp(-creatinine) + log10(glucose) - floor(hba1c) + ceil(heart_rate / 7)",
    ],
)
def test_evaluator_equals_pandas_eval(encounters, expression):
    derived = derive(encounters, {"x": expression})["x"]
    pd.testing.assert_series_equal(derived, pandas_eval(encounters, expression), check_names=False)


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("where(hba1c > 8, 1.0, 0.0)", lambda d: np.where(d.hba1c > 8, 1.0, 0.0)),
        ("clip(glucose, 50, 400)", lambda d: np.clip(d.glucose, 50, 400)),
        (
            "minimum(age, 90) + maximum(length_of_stay, 2)",
            lambda d: np.minimum(d.age, 90) + np.maximum(d.length_of_stay, 2),
        ),
        ("isnan(hba1c) * 1.0", lambda d: d.hba1c.isna() * 1.0),
        ("coalesce(hba1c, 5.7)", lambda d: d.hba1c.fillna(5.7)),
    ],
)
def test_the_added_functions_compute_what_numpy_does(encounters, expression, expected):
    derived = derive(encounters, {"x": expression})["x"]
    np.testing.assert_allclose(derived.to_numpy(dtype=float), np.asarray(expected(encounters), dtype=float))
    assert derived.index.equals(encounters.index)


def test_a_later_derived_feature_may_use_an_earlier_one(encounters):
    out = derive(encounters, {"stay": "log1p(length_of_stay)", "twice": "stay * 2"})
    pd.testing.assert_series_equal(out["twice"], np.log1p(encounters.length_of_stay) * 2, check_names=False)


def test_expressions_are_parsed_once(encounters):
    parse.cache_clear()
    for _ in range(3):
        derive(encounters, {"x": "log1p(age)"})
    assert parse.cache_info().misses == 1


def test_referenced_names_are_the_columns_and_functions():
    assert referenced_names("log1p(length_of_stay) + where(age > 65, hba1c, 0) | ~flag") == {
        "log1p", "length_of_stay", "where", "age", "hba1c", "flag",
    }  # fmt: skip
    assert referenced_names("age.__class__") == set()


def test_a_bad_expression_still_names_itself(encounters):
    with pytest.raises(ValueError, match=r"derived feature 'x' = 'no_such_column \* 2' cannot be computed"):
        derive(encounters, {"x": "no_such_column * 2"})


@pytest.mark.parametrize(
    "expression, construct",
    [
        ("__import__('os').getcwd()", "a call of '__import__' at character 1"),
        ("age.__class__.__mro__[-1].__subclasses__()", "attribute access at character 4"),
        ("glucose[0]", "subscript at character 8"),
        ("(lambda: age)()", "lambda at character 2"),
        ("[a for a in age]", "comprehension at character 1"),
        ("f'{age}'", "f-string at character 1"),
        ("log1p(x=age)", "keyword argument at character 7"),
        ("log1p(*age)", "starred argument at character 7"),
        ("age if age > 1 else 0", "conditional expression at character 1"),
        ("sex + 'x'", "a string literal at character 7"),
        ("log1p(age, 2)", "log1p() with 2 argument(s)"),
        ("age @ age", "operator @"),
        ("age in glucose", "operator in"),
        ("age in (1, 2)", "tuple at character 8"),
        ("None", "the literal None"),
        ("age & glucose.x", "attribute access at character 14"),
    ],
)
def test_constructs_outside_the_language_are_refused_before_evaluation(encounters, expression, construct):
    with pytest.raises(ValueError, match="is not allowed in a derived feature") as info:
        parse(expression)
    assert construct in str(info.value)
    with pytest.raises(ValueError, match="cannot be computed"):
        derive(encounters, {"x": expression})


def test_huge_integer_powers_do_not_hang(encounters):
    with pytest.raises(ValueError, match="cannot be computed"):
        derive(encounters, {"x": "age * 9 ** 9 ** 9 ** 9"})
    with pytest.raises(ValueError, match="at most 1000"):
        parse("age + " * 200 + "age")
