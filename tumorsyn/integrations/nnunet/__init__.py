"""nnU-Net v2 integration: synthetic tumours written into training patches as nnU-Net loads them.

- :mod:`~tumorsyn.integrations.nnunet.settings`: the ``tumorsyn_nnunet.json`` settings beside the
  plans, and the CT normalisation round trip (nnU-Net's ``CTNormalization`` and its inverse).
- :mod:`~tumorsyn.integrations.nnunet.transform`: :class:`TumorSynthesisTransform`, a
  batchgeneratorsv2 transform working on one normalised patch.
- :mod:`~tumorsyn.integrations.nnunet.trainer`: ``nnUNetTrainerTumorSyn``, the trainer that puts the
  transform first in nnU-Net's training augmentation.
- :mod:`~tumorsyn.integrations.nnunet.shim`: the small module ``tumorsyn nnunet install-trainer``
  places inside nnunetv2, where nnU-Net looks for trainers.

Only ``settings`` and ``shim`` are light; ``transform`` and ``trainer`` import torch and nnunetv2.
See docs/nnunet.md.
"""
