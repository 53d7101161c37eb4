"""Estimators from an allow-list of modules: a spec names a class, the platform decides what may load.

Spec authors are not trusted, and ``import_module(a).b(**params)`` on spec text runs any
code the process can reach (``os.system``, ``subprocess.Popen``, ``pathlib.Path(...).touch``
through a constructor). So, before anything is imported, the class path's module must be
under an allowed prefix (scikit-learn, plus what the operator lists in the
``ML_PLATFORM_ESTIMATOR_MODULES`` setting; never the spec); only that module is imported;
the attribute must be a class deriving from scikit-learn's ``BaseEstimator`` and of the
task's kind; and the parameters must be plain data and parameters of that class. Only then
is the class instantiated.

Each check raises ``ValueError`` starting with the key (``estimator.class`` or
``estimator.params``), so the spec loader can name the file, the key and the fix.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from ml_platform.settings import get_settings
from ml_platform.spec.vocabulary import Task

DEFAULT_MODULES = ("sklearn",)
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_KIND = {
    Task.binary_classification: ("a classifier", ClassifierMixin),
    Task.regression: ("a regressor", RegressorMixin),
}
_EXAMPLE = "such as sklearn.linear_model.LogisticRegression"


def allowed_modules() -> tuple[str, ...]:
    """scikit-learn, plus the module prefixes the operator lists in ML_PLATFORM_ESTIMATOR_MODULES."""
    extra = [p.strip().rstrip(".") for p in get_settings().estimator_modules.split(",") if p.strip()]
    return (*DEFAULT_MODULES, *extra)


def _is_allowed(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def estimator_class(class_path: str, task: Task | None = None, prefixes: tuple[str, ...] | None = None) -> type:
    """The class a spec names, checked to be an allowed estimator of the task's kind, not instantiated."""
    prefixes = allowed_modules() if prefixes is None else prefixes
    module_name, _, class_name = class_path.rpartition(".")
    if not _DOTTED.match(class_path) or not module_name:
        raise ValueError(f"estimator.class '{class_path}' cannot be imported: give a full class path {_EXAMPLE}")
    if not _is_allowed(module_name, prefixes):
        raise ValueError(
            f"estimator.class '{class_path}' is not allowed: estimators come from the modules "
            f"{', '.join(prefixes)}; an operator may allow more in ML_PLATFORM_ESTIMATOR_MODULES, a spec cannot"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"estimator.class '{class_path}' cannot be imported: {exc}. Give a full class path {_EXAMPLE}"
        ) from None
    # A lookup in the module's own namespace: no module __getattr__, no descriptors run.
    cls = vars(module).get(class_name)
    if cls is None:
        raise ValueError(
            f"estimator.class '{class_path}' cannot be imported: {module_name} has no '{class_name}'. "
            f"Give a full class path {_EXAMPLE}"
        )
    if not isinstance(cls, type) or not issubclass(cls, BaseEstimator):
        raise ValueError(
            f"estimator.class '{class_path}' is not a scikit-learn estimator class (a subclass of "
            f"sklearn.base.BaseEstimator); name one {_EXAMPLE}"
        )
    if task is not None and not issubclass(cls, _KIND[task][1]):
        raise ValueError(f"estimator.class: task {task.value} needs {_KIND[task][0]}; {class_path} is not one")
    return cls


def _not_plain(value: Any) -> str | None:
    """The type name of the first value that is not plain data (numbers, strings, booleans, None,
    lists and string-keyed mappings of those), or None when all of it is."""
    if value is None or isinstance(value, bool | int | float | str):
        return None
    if isinstance(value, list):
        items = value
    elif isinstance(value, dict) and all(isinstance(k, str) for k in value):
        items = list(value.values())
    else:
        return type(value).__name__
    return next((found for found in map(_not_plain, items) if found), None)


def check_params(cls: type, params: dict[str, Any]) -> None:
    """Parameters must be plain data and named parameters of the class, before it is instantiated."""
    try:
        known = cls._get_param_names()  # read from the signature of __init__, nothing instantiated
    except RuntimeError as exc:  # an __init__ taking *args: scikit-learn itself cannot clone it
        raise ValueError(f"estimator.class '{cls.__name__}' has no usable parameter list: {exc}") from None
    for name, value in params.items():
        if name not in known:
            raise ValueError(
                f"estimator.params do not fit {cls.__name__}: '{name}' is not one of its parameters "
                f"({', '.join(known)})"
            )
        found = _not_plain(value)
        if found:
            raise ValueError(
                f"estimator.params.{name} holds a {found}: parameters are plain data "
                "(numbers, strings, booleans, null, and lists or mappings of those)"
            )


def build_estimator(class_path: str, params: dict[str, Any], task: Task | None = None) -> BaseEstimator:
    """A fresh, unfitted estimator, built only after every check above passed."""
    cls = estimator_class(class_path, task)
    check_params(cls, params)
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"estimator.params do not fit {class_path}: {exc}") from None
