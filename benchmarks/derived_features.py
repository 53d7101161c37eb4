"""Cost of deriving a model's features for one micro-batch, as the endpoint does per request batch.

Times ``derive`` (the platform's own expression evaluator, expressions parsed once and cached)
on a batch of the shipped readmission spec, against ``DataFrame.eval`` on the same expressions
for reference. Prints milliseconds per batch: the best of ``--repeat`` runs of ``--number`` calls.
"""

from __future__ import annotations

import argparse
import timeit

from ml_platform.data.synthetic import generate_readmission
from ml_platform.spec import SHIPPED_SPECS_DIR, get_spec
from ml_platform.spec.expressions import derive


def per_batch_ms(function, number: int, repeat: int) -> float:
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    spec = get_spec("readmission_risk", SHIPPED_SPECS_DIR)
    batch = generate_readmission(args.rows, seed=1, missingness=0.1)
    derived = spec.features.derived

    def with_pandas_eval():
        out = batch.copy()
        for name, expression in derived.items():
            out[name] = out.eval(expression, engine="python")
        return out

    print(f"{len(derived)} derived features, {args.rows} rows per batch")
    print(
        f"derive (platform evaluator): {per_batch_ms(lambda: derive(batch, derived), args.number, args.repeat):.3f} ms"
    )
    print(f"DataFrame.eval (reference):  {per_batch_ms(with_pandas_eval, args.number // 10, args.repeat):.3f} ms")


if __name__ == "__main__":
    main()
