"""Bots of intelmq-crossborder, installed as ``intelmq_crossborder.bots``."""
