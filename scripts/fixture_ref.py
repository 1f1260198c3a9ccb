"""Shared by the scripts/gen_*_fixtures.py generators: where the repository is, and the reference
model of JAX/Flax random numbers they compute expected values with.

The model is ../shared/spec/jax_random_ref.py beside the repository unless a path is given as
the script's first argument."""
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_reference():
    """The jax_random_ref module: sys.argv[1] if given, else ../shared/spec/jax_random_ref.py."""
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, '..', 'shared', 'spec', 'jax_random_ref.py')
    if not os.path.exists(path):
        sys.exit('reference model not found: %s (pass its path as the first argument)' % path)
    spec = importlib.util.spec_from_file_location('jax_random_ref', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
