"""Any transformers checkpoint whose attention goes through transformers' attention interface, recorded exactly.

``attention`` is the function registered under ``"playground"`` (and ``mask`` its mask function), ``model`` the
wrapper that tags a model's layers and owns its recorder, ``loader`` opens a checkpoint folder after reading its
config.json, refusing what it cannot open before a weight is read.
"""
from playground.models.hf.attention import NAME, register
from playground.models.hf.model import HubModel

register()

__all__ = ["HubModel", "NAME", "register"]
