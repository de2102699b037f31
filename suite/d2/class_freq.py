"""Class frequencies of the training set, for EQL: image count / number of training images."""

from typing import List, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog


def class_freq_from_metadata(dataset_names: Sequence[str], num_classes: int) -> List[float]:
    """Fraction of training images that contain each class (label order), from the metadata of
    the registered training sets: `class_image_count` ([{"id", "image_count"}], LVIS v1's field)
    and `num_train_images` (or, if absent, the number of records the data set loads).

    Raises ValueError naming DATASETS.TRAIN when a set lacks `class_image_count`.
    """
    image_counts = [0] * num_classes
    num_images = 0
    for name in dataset_names:
        metadata = MetadataCatalog.get(name)
        if not hasattr(metadata, "class_image_count"):
            raise ValueError(
                f"DATASETS.TRAIN: the metadata of {name!r} has no class_image_count, which EQL needs "
                "for its class frequencies (register the set with suite.data.register_dataset)"
            )
        ids = sorted(entry["id"] for entry in metadata.class_image_count)
        if len(ids) != num_classes:
            raise ValueError(f"DATASETS.TRAIN: {name!r} has {len(ids)} classes, MODEL.ROI_HEADS.NUM_CLASSES is {num_classes}")
        label_of = {category_id: label for label, category_id in enumerate(ids)}
        for entry in metadata.class_image_count:
            image_counts[label_of[entry["id"]]] += entry["image_count"]
        num_images += getattr(metadata, "num_train_images", None) or len(DatasetCatalog.get(name))
    if num_images == 0:
        raise ValueError("DATASETS.TRAIN: no training images, so EQL has no class frequencies")
    return [count / num_images for count in image_counts]
