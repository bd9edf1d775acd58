"""Collating items that carry tumour specs (lists of different lengths) into a MONAI batch."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from monai.data import MetaTensor, list_data_collate

from tumorsyn.transforms.fixed import SPECS_KEY

__all__ = ["collate_tumor_specs"]


def collate_tumor_specs(batch: Sequence) -> Any:
    """``monai.data.list_data_collate`` that keeps each item's ``tumor_specs`` as a list.

    Items with and without tumours carry spec lists of different lengths, which default collation
    refuses. This collate function takes them out of the items (and of their ``MetaTensor``
    metadata), collates the rest with MONAI, and sets ``batch["tumor_specs"]`` (and ``.meta`` of the
    collated image and label) to the list of the items' spec lists, in batch order.

    Parameters
    ----------
    batch : sequence of dict (or of lists of dict, as from ``RandCropByPosNegLabeld``)

    Returns
    -------
    dict
        The collated batch.
    """
    items = [i for entry in batch for i in (entry if isinstance(entry, list) else [entry])]
    if not items or not isinstance(items[0], Mapping):
        return list_data_collate(batch)
    stripped, specs = [], []
    for item in items:
        specs.append(item.get(SPECS_KEY, []))
        clean = {}
        for key, value in item.items():
            if key == SPECS_KEY:
                continue
            if isinstance(value, MetaTensor) and SPECS_KEY in value.meta:
                meta = {k: v for k, v in value.meta.items() if k != SPECS_KEY}
                value = MetaTensor(value.as_tensor(), meta=meta, applied_operations=list(value.applied_operations))
            clean[key] = value
        stripped.append(clean)
    collated = list_data_collate(stripped)
    collated[SPECS_KEY] = specs
    for key, value in collated.items():
        if isinstance(value, MetaTensor) and any(isinstance(i.get(key), MetaTensor) and SPECS_KEY in i[key].meta
                                                 for i in items):
            value.meta[SPECS_KEY] = specs
    return collated
