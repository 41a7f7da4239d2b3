"""What every command shares, training or not: the device it runs on, torchrun, what it says (logging), the
checkpoint format, and the files it writes (outputs, figures)."""
