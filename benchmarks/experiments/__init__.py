"""Trial fixes of product hot spots, applied to the operator process only.

``python -m benchmarks.run --trial NAME`` starts the operator with this folder on
``PYTHONPATH``: Python then imports :mod:`sitecustomize` at start-up, which applies the
trials named in ``CERTAUTO_BENCH_TRIALS`` (see :mod:`benchmarks.experiments.trials`).
They measure the effect of a proposed fix before anyone edits the product; they are
never shipped, and the fix itself belongs in the product.
"""
