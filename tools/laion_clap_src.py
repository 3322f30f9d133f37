"""Runs LAION-AI/CLAP's own code for the CLAP fixture scripts, from a checkout's src/laion_clap/clap_module
folder (LAION_SRC), without installing the package (whose imports pull in h5py, webdataset, wget, ...):

- `htsat(LAION_SRC)`: the module htsat.py (with feature_fusion.py), imported as a package. htsat.py also
  imports do_mixup and interpolate from utils.py, whose other imports (h5py, torchvision) are not needed:
  those two functions are written out as utils.py defines them.
- `data_functions(LAION_SRC, names)`: top-level functions of training/data.py (the sibling folder of
  clap_module), their source cut out of the file with `ast` and executed unchanged in a namespace with the
  modules they use (numpy, torch, torch.nn.functional, torchaudio, contextlib.suppress, torchvision).
  torchvision is not in the reference venv (its wheels are built against another torch): the one call
  data.py makes, `torchvision.transforms.Resize(size)(tensor)`, is for tensors, since torchvision 0.17,
  `torch.nn.functional.interpolate(x, size, mode="bilinear", align_corners=False, antialias=True)` on x
  as a 4-d batch, which the stand-in calls.
- `train_functions(LAION_SRC, names)`: the same for training/train.py (its metrics).
"""
import ast
import importlib
import os
import shutil
import sys
import tempfile
import types
from contextlib import suppress

import numpy as np
import torch
import torch.nn.functional as F


def htsat(laion_src):
    pkg = tempfile.mkdtemp()
    os.makedirs(os.path.join(pkg, "laion_src"))
    for f in ["htsat.py", "feature_fusion.py"]:
        shutil.copy(os.path.join(laion_src, f), os.path.join(pkg, "laion_src", f))
    with open(os.path.join(pkg, "laion_src", "utils.py"), "w") as f:
        f.write("import torch\n"
                "def do_mixup(x, l):\n    return (x.transpose(0, -1) * l + torch.flip(x, dims=[0]).transpose(0, -1) * (1 - l)).transpose(0, -1)\n"
                "def interpolate(x, ratio):\n    b, t, c = x.shape\n    return x[:, :, None, :].repeat(1, 1, ratio, 1).reshape(b, t * ratio, c)\n")
    open(os.path.join(pkg, "laion_src", "__init__.py"), "w").close()
    sys.path.insert(0, pkg)
    return importlib.import_module("laion_src.htsat")


class _Resize:
    """torchvision.transforms.Resize(size) on a tensor [..., H, W] (bilinear, antialias True, its default since 0.17)."""
    def __init__(self, size):
        self.size = list(size)

    def __call__(self, x):
        shape = x.shape
        y = F.interpolate(x.reshape(-1, 1, shape[-2], shape[-1]), size=self.size, mode="bilinear",
                          align_corners=False, antialias=True)
        return y.reshape(*shape[:-2], *self.size)


def _functions(path, names, namespace):
    source = open(path).read()
    tree = ast.parse(source)
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in names:
            exec(compile(ast.Module([node], type_ignores=[]), path, "exec"), namespace)
            found[node.name] = namespace[node.name]
    missing = set(names) - set(found)
    if missing:
        raise SystemExit(f"{path}: no function {sorted(missing)}")
    return found


def data_functions(laion_src, names):
    import torchaudio
    torchvision = types.SimpleNamespace(transforms=types.SimpleNamespace(Resize=_Resize))
    namespace = {"np": np, "torch": torch, "F": F, "torchaudio": torchaudio, "torchvision": torchvision,
                 "suppress": suppress, "logging": __import__("logging")}
    return _functions(os.path.join(laion_src, "..", "training", "data.py"), names, namespace)


def train_functions(laion_src, names):
    namespace = {"np": np, "torch": torch, "F": F, "logging": __import__("logging")}
    return _functions(os.path.join(laion_src, "..", "training", "train.py"), names, namespace)
