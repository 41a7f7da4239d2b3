"""Using a trained model outside resnetlab: files an application loads (export)."""

from resnetlab.deploy.export import FORMATS, export

__all__ = ["FORMATS", "export"]
