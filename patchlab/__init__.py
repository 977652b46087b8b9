"""patchlab: a testbed for machine-learning security in the physical world."""

from patchlab.errors import PatchlabError

__version__ = "0.1.0"
__all__ = ["PatchlabError", "__version__"]
