"""Class frequencies of the training set, for EQL and the federated loss: image count / number of
training images."""

from typing import List, Sequence

from detectron2.data import MetadataCatalog


def class_freq_from_metadata(dataset_names: Sequence[str], num_classes: int) -> List[float]:
    """Fraction of training images that contain each class (label order), from the metadata of
    the registered training sets: `class_image_count` ([{"id", "image_count"}], LVIS v1's field,
    ids 1..num_classes) and `num_train_images`, both set by `suite.data.register_dataset`.

    Raises ValueError naming DATASETS.TRAIN when a set lacks either field (Detectron2's builtin
    LVIS metadata has no `num_train_images`), when its count table does not list exactly the
    classes 1..num_classes, or when a frequency falls outside (0, 1].
    """
    image_counts = [0] * num_classes
    num_images = 0
    for name in dataset_names:
        metadata = MetadataCatalog.get(name)
        for field in ("class_image_count", "num_train_images"):
            if not hasattr(metadata, field):
                raise ValueError(
                    f"DATASETS.TRAIN: the metadata of {name!r} has no {field}, which EQL and the "
                    "federated loss need for their class frequencies (register the set with suite.data.register_dataset)")
        ids = sorted(entry["id"] for entry in metadata.class_image_count)
        if ids != list(range(1, num_classes + 1)):
            raise ValueError(
                f"DATASETS.TRAIN: the class_image_count of {name!r} lists {len(ids)} class ids, not exactly "
                f"1..{num_classes} (MODEL.ROI_HEADS.NUM_CLASSES)")
        for entry in metadata.class_image_count:
            image_counts[entry["id"] - 1] += entry["image_count"]
        num_images += metadata.num_train_images
    if num_images <= 0:
        raise ValueError("DATASETS.TRAIN: no training images, so there are no class frequencies")
    class_freq = [count / num_images for count in image_counts]
    for label, freq in enumerate(class_freq):
        if not 0 < freq <= 1:
            raise ValueError(
                f"DATASETS.TRAIN: class id {label + 1} has frequency {freq:g} (image_count {image_counts[label]} / "
                f"num_train_images {num_images}), outside (0, 1]: the metadata's counts do not match its images")
    return class_freq
