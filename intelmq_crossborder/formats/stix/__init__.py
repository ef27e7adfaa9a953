"""STIX 2.x interop, the pure-library part (no IntelMQ Bot classes).

- :mod:`.markings`: marking definitions (TLP 1.0, TLP 2.0 extension, OpenCTI ids, statements):
  read them and build them for export.
- :mod:`.patterns`: STIX patterns (``stix2-patterns`` grammar) to IntelMQ fields.
- :mod:`.parse`: bundles (2.0 and 2.1) to IntelMQ events, for the STIX parser bot and
  ``intelmq-crossborder convert stix``.
"""
