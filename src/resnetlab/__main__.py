"""`python -m resnetlab` and `torchrun -m resnetlab train ...`."""

from resnetlab.cli.main import entry

if __name__ == "__main__":
    entry()
