from resnetlab.models.complexity import count_macs, count_parameters
from resnetlab.models.factory import create_model, list_models
from resnetlab.models.registry import check_name, cifar_depth, is_cifar
from resnetlab.models.resnet import BasicBlock, Bottleneck, ResNet, ZeroPadShortcut
from resnetlab.models.weight_files import read_checkpoint
from resnetlab.models.weights import load_weights

__all__ = [
    "BasicBlock", "Bottleneck", "ResNet", "ZeroPadShortcut", "count_macs", "count_parameters",
    "check_name", "cifar_depth", "create_model", "is_cifar", "list_models", "load_weights", "read_checkpoint",
]
