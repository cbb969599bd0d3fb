#!/usr/bin/env bash
# The HTTP queue's extra.

# --8<-- [start:install]
pip install "conveyor[http]"   # on the machines that use HttpQueue
# --8<-- [end:install]
