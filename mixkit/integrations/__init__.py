"""Optional integrations with training frameworks, each imported only when asked for.

``import mixkit`` never imports a framework: ``from mixkit.integrations.lightning import
MixCallback`` needs the ``lightning`` package (``pip install mixkit[lightning]``).
"""
