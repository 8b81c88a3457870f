"""Constants and compound dtypes of the larcv3 HDF5 layout used by CosmicTagger files.

larcv3 does not install from PyPI on every machine, so this package reads and writes its layout
directly with h5py. The dtypes below keep the C struct padding of the larcv3 writer (checked
against the public CosmicTagger example file): write tables with these padded dtypes so that
larcv3 itself can read the result.

Layout of one event ("entry") in a ``sparse2d`` product group ``Data/sparse2d_<producer>_group``:
``extents[entry] = (first, N)`` selects rows of ``voxel_extents`` and ``image_meta``, one row per
projection (wire plane); ``voxel_extents[row] = (first, N, ID)`` selects that plane's rows of
``voxels``; a voxel ``id`` is a flat C-order index over ``number_of_voxels = (N0, N1)``.
"""
import numpy as np

EVENTS_GROUP = "Events"
EVENT_ID_DATASET = "Events/event_id"
DATA_GROUP = "Data"

SPARSE2D = "sparse2d"
SPARSE2D_DATASETS = ("extents", "voxel_extents", "image_meta", "voxels")

DEFAULT_IMAGE_PRODUCER = "sbndwire"
DEFAULT_LABEL_PRODUCER = "sbnd_cosmicseg"

NUM_PLANES = 3
# Dense plane shape (height = drift time ticks, width = wires) of SBND images at full resolution.
IMAGE_HEIGHT = 1280
IMAGE_WIDTH = 2048
# number_of_voxels stored in image_meta for SBND: (wires, ticks); id = wire * ticks + tick.
NUMBER_OF_VOXELS = (IMAGE_WIDTH, IMAGE_HEIGHT)

BACKGROUND, COSMIC, NEUTRINO = 0, 1, 2
NUM_CLASSES = 3
CLASS_NAMES = ("background", "cosmic", "neutrino")

# Storage settings of the real files: 1-D chunked datasets, unlimited length, gzip level 1.
GZIP_LEVEL = 1

EXTENTS_DTYPE = np.dtype({"names": ["first", "N"], "formats": ["<u8", "<u4"],
                          "offsets": [0, 8], "itemsize": 16})
ID_EXTENTS_DTYPE = np.dtype({"names": ["first", "N", "ID"], "formats": ["<u8", "<u4", "<u4"],
                             "offsets": [0, 8, 12], "itemsize": 16})
VOXEL_DTYPE = np.dtype({"names": ["id", "value"], "formats": ["<u8", "<f4"],
                        "offsets": [0, 8], "itemsize": 16})
IMAGE_META_DTYPE = np.dtype({
    "names": ["valid", "projection_id", "image_sizes", "number_of_voxels", "origin"],
    "formats": ["u1", "<u8", ("<f8", (2,)), ("<u8", (2,)), ("<f8", (2,))],
    "offsets": [0, 8, 16, 32, 48],
    "itemsize": 72,
})
EVENT_ID_DTYPE = np.dtype([("run", "<i8"), ("subrun", "<i8"), ("event", "<i8")])

# Chunk lengths (rows) of the real sample, per dataset name.
CHUNK_ROWS = {"extents": 10, "voxel_extents": 100, "image_meta": 100, "voxels": 1000,
              "event_id": 100}


def product_group_name(product, producer):
    """Return the group name of a data product, e.g. ``sparse2d_sbndwire_group``."""
    return f"{product}_{producer}_group"


def split_group_name(group_name):
    """Split ``<product>_<producer>_group`` into ``(product, producer)``, or return None."""
    if not group_name.endswith("_group") or "_" not in group_name[:-len("_group")]:
        return None
    stem = group_name[:-len("_group")]
    product, producer = stem.split("_", 1)
    return product, producer
