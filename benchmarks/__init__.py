"""The mixkit benchmark harness: ``python -m benchmarks SUITE [--quick] [--seeds N] [--out DIR]``.

Suites (``benchmarks/suites/<name>.py``, each with ``run(args: SuiteArgs) -> dict``):

* ``theory``: Proposition 1, Example 1 (margins 7/16 and 1/2), Example 3 (Fig. 7 angles),
  Fig. 6 (label conflicts of top-1 labels on the 9-class Gaussian);
* ``synthetic``: Table 1's synthetic columns, vanilla vs mixup vs mixup+GenLabel;
* ``tabular``: the OpenML protocol of section 6 / Table 11, Tables 2-5 and 8;
* ``robust``: FGSM robust accuracy (Tables 6 and 9, Table 12 settings);
* ``genmix``: Table 15's synthetic columns;
* ``image``: digits / 5k MNIST (CIFAR with a local copy), Table 7's rows;
* ``speed``: relabel and collate cost.

The many small models of a tabular run are trained together as one batched model
(:mod:`benchmarks.batched`); reports put the paper's numbers beside ours
(:mod:`benchmarks.report`).
"""

SUITES = ("theory", "synthetic", "tabular", "robust", "genmix", "image", "speed")
#: the suites that train models and take ``--protocol`` (results under ``results/<suite>/<protocol>``)
TRAINING_SUITES = ("synthetic", "tabular", "robust", "genmix", "image")
