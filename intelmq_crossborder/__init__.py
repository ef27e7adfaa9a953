"""intelmq-crossborder: the library behind the cross-border IntelMQ bots.

Pure library code (TLP, policy, harmonization, formats, CLI); the IntelMQ bot
classes live in ``intelmq_crossborder.bots`` (the repository's ``bots/`` folder).
"""
__version__ = "0.1.0"
