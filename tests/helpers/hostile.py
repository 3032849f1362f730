"""Hostile files for tests: a pickle that runs code when unpickled."""

from __future__ import annotations

import builtins
import pickle

import torch


class Payload:
    """Unpickling this runs exec(): it writes the marker file. It must never be unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def evil_pickle(path, marker, *, zip_format: bool):
    """A weights file whose pickle runs code: torch.save's zip format, or a raw pickle."""
    obj = {"state_dict": {"fc.weight": Payload(marker)}}
    if zip_format:
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=2))
    return path
