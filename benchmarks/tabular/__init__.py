"""Pieces of the tabular and robust suites: datasets and splits (:mod:`.data`), the paper
protocol's runs (:mod:`.paper`), win/tie/loss statistics (:mod:`.stats`)."""
