from resnetlab.data.arrays import ArrayDataset, holdout_split
from resnetlab.data.device_loader import DeviceLoader
from resnetlab.data.normalization import Normalization
from resnetlab.data.sources import Dataset, open_dataset

__all__ = ["ArrayDataset", "Dataset", "DeviceLoader", "Normalization", "holdout_split", "open_dataset"]
