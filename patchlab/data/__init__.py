"""Data: image reading, labelled folders, class lookup, built-in samples, MNIST/digits."""

from patchlab.data.classes import ClassIndex, imagenet_classes, lookup_class
from patchlab.data.digits import Digits, load_digits, load_mnist, read_idx, resize_digits, split_digits
from patchlab.data.folders import LabelledImage, labelled_folder, shared_data_dir
from patchlab.data.images import (IMAGE_SUFFIXES, list_images, open_pil, png_bytes, read_image,
                                  read_image_rgba, save_image, to_uint8_hwc)
from patchlab.data.samples import Sample, load_sample, load_samples, sample_names

__all__ = [
    "ClassIndex", "Digits", "IMAGE_SUFFIXES", "LabelledImage", "Sample", "imagenet_classes", "labelled_folder",
    "list_images", "load_digits", "load_mnist", "load_sample", "load_samples", "lookup_class", "open_pil", "png_bytes",
    "read_idx", "read_image", "read_image_rgba", "resize_digits", "sample_names", "save_image", "shared_data_dir",
    "split_digits", "to_uint8_hwc",
]
