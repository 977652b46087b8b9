"""patchlab: a testbed for machine-learning security in the physical world."""

from patchlab._malloc import tune_malloc
from patchlab.errors import PatchlabError

tune_malloc()  # keep freed tensor memory mapped: 20-25 % less CPU per forward+backward (see patchlab/_malloc.py)

__version__ = "0.1.0"
__all__ = ["PatchlabError", "__version__"]
