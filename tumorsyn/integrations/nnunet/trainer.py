"""``nnUNetTrainerTumorSyn``: nnU-Net v2's default trainer with synthetic tumours in its training patches.

Train with ``nnUNetv2_train DATASET 3d_fullres FOLD -tr nnUNetTrainerTumorSyn`` after
``tumorsyn nnunet install-trainer`` (nnU-Net looks for trainers only inside its own package) and
with a ``tumorsyn_nnunet.json`` beside the plans (``tumorsyn nnunet configure``). Everything else
(network, loss, schedule, validation, inference) is the default trainer's.
"""
from __future__ import annotations

import json
from pathlib import Path

from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from tumorsyn import __version__
from tumorsyn.errors import ConfigError
from tumorsyn.integrations.nnunet.settings import SETTINGS_FILE, CTIntensity, load_settings, settings_path
from tumorsyn.integrations.nnunet.transform import TumorSynthesisTransform
from tumorsyn.io.writers import atomic_path

__all__ = ["nnUNetTrainerTumorSyn"]


class nnUNetTrainerTumorSyn(nnUNetTrainer):
    """nnU-Net's trainer, with :class:`TumorSynthesisTransform` first in the training augmentation.

    The transform runs on each patch as the data loader cuts it, before the spatial augmentation:
    the patch is then at the configuration's spacing (the plans' ``spacing``), so tumour sizes are
    the millimetres the settings say. Validation patches are left as they are.

    Settings come from ``$TUMORSYN_NNUNET_CONFIG`` or ``tumorsyn_nnunet.json`` beside the plans
    (:mod:`tumorsyn.integrations.nnunet.settings`); the trainer copies the settings it used, with
    the resolved labels and the CT normalisation, into its output folder.
    """

    def build_tumor_transform(self) -> TumorSynthesisTransform:
        """The synthesis transform of this dataset and configuration, from the settings file and the plans."""
        path = settings_path(self.preprocessed_dataset_folder_base)
        settings = load_settings(path)
        configuration = self.configuration_manager
        if len(configuration.patch_size) != 3:
            raise ConfigError(f"configuration '{self.configuration_name}' trains on 2D slices, where a tumour cannot be "
                              "placed in 3D; use tumour synthesis with 3d_fullres or 3d_lowres", path=path)
        schemes = configuration.normalization_schemes
        if settings.channel >= len(schemes):
            raise ConfigError(f"channel {settings.channel} does not exist: the plans have {len(schemes)} input "
                              "channel(s)", path=path)
        properties = self.plans_manager.foreground_intensity_properties_per_channel.get(str(settings.channel))
        intensity = CTIntensity.from_plans(schemes[settings.channel], properties or {}, channel=settings.channel,
                                           path=path)
        organ_labels, tumor_label = settings.labels(self.dataset_json, path=path)
        # The data loader cuts a larger patch; the spatial augmentation keeps its centre, patch_size.
        transform = TumorSynthesisTransform(settings, intensity, configuration.spacing, organ_labels=organ_labels,
                                            tumor_label=tumor_label, kept_shape=configuration.patch_size)
        record = {"tumorsyn_version": __version__, "settings_file": str(path), "settings": settings.to_dict(),
                  "organ_labels": list(organ_labels), "tumor_label": tumor_label,
                  "spacing_mm": list(transform.spacing_mm),
                  "ct_normalisation": {"mean_hu": intensity.mean_hu, "std_hu": intensity.std_hu,
                                       "lower_hu": intensity.lower_hu, "upper_hu": intensity.upper_hu}}
        self.print_to_log_file(f"tumorsyn: synthetic tumours in training patches: {json.dumps(record)}")
        if self.output_folder is not None and self.local_rank == 0:
            out = Path(self.output_folder) / SETTINGS_FILE
            with atomic_path(out) as tmp:
                tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        return transform

    # nnU-Net declares this a staticmethod; an instance method here sees the trainer's plans and
    # dataset, and nnU-Net calls it as self.get_training_transforms(...).
    def get_training_transforms(self, patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, use_mask_for_norm=None, is_cascaded=False,
                                foreground_labels=None, regions=None, ignore_label=None) -> BasicTransform:
        """nnU-Net's training transforms with tumour synthesis first."""
        default = super().get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm=use_mask_for_norm, is_cascaded=is_cascaded, foreground_labels=foreground_labels,
            regions=regions, ignore_label=ignore_label)
        return ComposeTransforms([self.build_tumor_transform(), default])
