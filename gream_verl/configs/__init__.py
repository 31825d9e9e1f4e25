"""Default YAML configs; copy one, edit it, pass it with ``--config``."""
