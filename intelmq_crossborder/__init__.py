"""intelmq-crossborder: the library behind the cross-border IntelMQ bots.

The subpackages are the layers (docs/layout.md says what lives where and why): ``core``
(TLP, fingerprints, hostile input, files, retry, secrets), ``harmonization``, ``policy``,
``formats``, ``exchange``, ``datalake``, ``analytics``, ``runtime`` (the only code that
touches IntelMQ's Bot internals), ``cli``, ``demo``, ``testing`` and the IntelMQ bots in
``bots``, which only adapt the library to IntelMQ.
"""
__version__ = "0.1.0"
