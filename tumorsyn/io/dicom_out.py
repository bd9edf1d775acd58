"""Writing outputs as DICOM for a DICOM input: the derived CT series, and masks as DICOM-SEG objects.

``tumorsyn generate`` on a DICOM series writes (``--output-format auto`` or ``dicom``):

- the CT as a new series folder: every input slice's header kept, new SeriesInstanceUID and
  SOPInstanceUIDs, ImageType ``DERIVED\\SECONDARY``, a SeriesDescription and DerivationDescription
  that say what was synthesised; pixel data re-encoded in the input's own representation (Bits
  Allocated/Stored, Pixel Representation, Rescale Slope/Intercept), uncompressed;
- the tumour mask (and the label map) as DICOM-SEG objects referencing that new series (highdicom).

UIDs are derived (:func:`pydicom.uid.generate_uid` with entropy sources), never random: the same
spec on the same input gives the same bytes, as every other tumorsyn output does.
pydicom and highdicom are optional dependencies (``pip install 'tumorsyn[dicom]'``), imported here.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tumorsyn.errors import InputError
from tumorsyn.io.dicom import read_series_slices
from tumorsyn.io.writers import atomic_folder, atomic_path, stored_like

__all__ = ["Derivation", "derived_uid", "series_file_name", "write_series_like", "write_seg_like"]

# Transfer syntaxes written as they came; any other (compressed, big endian) is written as Explicit VR Little Endian.
_NATIVE_LITTLE_ENDIAN = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
_UID_ROOT = "tumorsyn derived"
# Type 2 attributes of the Patient and General Study modules (present, possibly empty): a SEG copies
# them from the series it references, so a series whose input lacked them gets them empty.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")


@dataclass(frozen=True)
class Derivation:
    """What one output is, for its DICOM headers and the derivation of its UIDs.

    Attributes
    ----------
    output_id : str
        The output's id in the manifest.
    organ, method : str
        Host organ and generator.
    seed_text : str
        The seed in words (``seed 3 (output seed 123...)`` or ``replayed spec seed ...``).
    input_key : str
        The input series' identity (its checksum): an empty Study or Frame of Reference UID of
        anonymised data is derived from it, so every output of one input shares them.
    uid_key : str
        Everything the output's bytes depend on (input checksum, output id, the specs as JSON):
        every UID of the output is derived from it, so the same run gives the same UIDs.
    version : str
        tumorsyn's version.
    """

    output_id: str
    organ: str
    method: str
    seed_text: str
    input_key: str
    uid_key: str
    version: str

    @property
    def description(self) -> str:
        """DerivationDescription (ST, at most 1024 characters)."""
        return (f"SYNTHETIC: {self.organ} tumour(s) written into this CT by tumorsyn {self.version}, generator "
                f"{self.method}, {self.seed_text}, output {self.output_id}; not a real lesion")[:1024]


def derived_uid(*parts: object) -> str:
    """A UID that is a function of ``parts`` (SHA-512 of them under pydicom's UID root)."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[_UID_ROOT, *(str(p) for p in parts)])


def series_file_name(index: int) -> str:
    """Name of slice ``index`` (0-based, in volume order) inside a written series folder."""
    return f"slice_{index + 1:04d}.dcm"


def _stored_range(ds) -> tuple[int, int]:
    """Range of stored values the slice's Bits Stored and Pixel Representation allow."""
    bits = int(getattr(ds, "BitsStored", ds.BitsAllocated))
    if int(getattr(ds, "PixelRepresentation", 0)) == 1:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _encoder(scan, ds, *, path: Path):
    """Physical values -> stored values of this series, clipped to its range (warning once if that was needed)."""
    lo, hi = _stored_range(ds)

    def encode(values: np.ndarray) -> np.ndarray:
        stored = np.rint((np.asarray(values, dtype=np.float64) - scan.inter) / scan.slope)
        outside = int(((stored < lo) | (stored > hi)).sum())
        if outside:
            warnings.warn(f"{path}: {outside} changed voxel(s) lie outside the range the input series can store "
                          f"({lo * scan.slope + scan.inter:g}..{hi * scan.slope + scan.inter:g} with Bits Stored "
                          f"{getattr(ds, 'BitsStored', ds.BitsAllocated)}); they were clipped to it", stacklevel=2)
        return np.clip(stored, lo, hi).astype(scan.raw.dtype)

    return encode


def _fill_uid(ds, keyword: str, uid_key: str) -> None:
    """An empty Study/Frame of Reference UID (anonymised data) gets a derived one: a SEG must reference it."""
    if not str(getattr(ds, keyword, "") or ""):
        setattr(ds, keyword, derived_uid(uid_key, keyword))


def _derived_slice(source, index: int, pixels: np.ndarray, derivation: Derivation, series_uid: str):
    """A copy of one input slice's header with new UIDs, the derived flags and ``pixels`` (rows, columns)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import ExplicitVRLittleEndian

    ds = copy.deepcopy(source)
    meta = ds.file_meta if getattr(ds, "file_meta", None) is not None else FileMetaDataset()
    source_uid = str(getattr(source, "SOPInstanceUID", "") or "")
    sop_class = str(getattr(source, "SOPClassUID", "") or "") or str(getattr(meta, "MediaStorageSOPClassUID", "") or "")
    sop_uid = derived_uid(derivation.uid_key, "sop", source_uid, index)
    ds.SOPClassUID = sop_class or "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage where the input names none
    ds.SOPInstanceUID = sop_uid
    ds.SeriesInstanceUID = series_uid
    for keyword in ("StudyInstanceUID", "FrameOfReferenceUID"):
        # Input-derived (not output-derived): every output of one input shares study and frame of reference.
        _fill_uid(ds, keyword, derivation.input_key)
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    rest = list(getattr(ds, "ImageType", []) or [])[2:]
    ds.ImageType = ["DERIVED", "SECONDARY", *rest]
    base = str(getattr(source, "SeriesDescription", "") or "").strip()
    ds.SeriesDescription = (f"{base} " if base else "") + f"+ synthetic {derivation.organ} tumour"
    ds.SeriesDescription = ds.SeriesDescription[-64:]  # LO holds 64 characters; keep the part that says what changed
    ds.DerivationDescription = derivation.description
    if source_uid:
        item = Dataset()
        item.ReferencedSOPClassUID = ds.SOPClassUID
        item.ReferencedSOPInstanceUID = source_uid
        ds.SourceImageSequence = DicomSequence([item])
    # Pixel data: native little endian, the input's own dtype (Bits Allocated, Pixel Representation).
    signed = int(getattr(ds, "PixelRepresentation", 0)) == 1
    dtype = np.dtype(f"<{'i' if signed else 'u'}{int(ds.BitsAllocated) // 8}")
    data = np.ascontiguousarray(pixels.astype(dtype))
    for keyword in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if keyword in ds:  # they describe the pixels, which changed
            setattr(ds, keyword, int(data.min() if keyword.startswith("Smallest") else data.max()))
    ds.PixelData = data.tobytes()
    ds["PixelData"].VR = "OW" if dtype.itemsize > 1 else "OB"
    if str(getattr(meta, "TransferSyntaxUID", "")) not in _NATIVE_LITTLE_ENDIAN:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta = meta
    return ds


def write_series_like(folder: str | Path, scan, values_canonical: np.ndarray, changed_canonical: np.ndarray,
                      derivation: Derivation) -> list:
    """Write the CT as a derived DICOM series of ``scan`` (a DICOM input) into the new folder ``folder``, atomically.

    Parameters
    ----------
    folder : str or Path
        The series folder to create (replaced whole if it exists; written in a temporary folder first).
    scan : Scan
        The input, read from a DICOM series folder (``scan.path``).
    values_canonical : ndarray of float, shape (X, Y, Z)
        New HU values in canonical order (only the changed voxels are read).
    changed_canonical : ndarray of bool, shape (X, Y, Z)
        Voxels to re-encode; every other stored value is the input's.
    derivation : Derivation

    Returns
    -------
    list of pydicom.Dataset
        The written slices in volume order (what a SEG references).
    """
    from pydicom.filewriter import dcmwrite

    sources = read_series_slices(scan.path)
    rows, columns = int(sources[0].Rows), int(sources[0].Columns)
    if scan.raw.shape != (columns, rows, len(sources)):
        raise InputError(f"DICOM series changed while it was read ({len(sources)} slices of {rows}x{columns}, "
                         f"volume {scan.raw.shape}); run again", path=scan.path)
    raw = stored_like(scan, values_canonical, changed_canonical, encode=_encoder(scan, sources[0], path=scan.path))
    series_uid = derived_uid(derivation.uid_key, "series", getattr(sources[0], "SeriesInstanceUID", ""))
    written = []
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        for index, source in enumerate(sources):
            # raw is (column, row, slice): a slice's pixel array (rows, columns) is its transpose.
            ds = _derived_slice(source, index, raw[:, :, index].T, derivation, series_uid)
            try:
                dcmwrite(tmp / series_file_name(index), ds, enforce_file_format=True)
            except OSError as exc:
                raise InputError(f"cannot write output ({exc.strerror or exc})", path=folder) from None
            written.append(ds)
    return written


def _segment_description(number: int, label: str, organ: str | None, derivation: Derivation):
    """One SEG segment: the synthetic tumour (a neoplasm) or the host organ (an anatomical structure)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(name=f"tumorsyn {derivation.method}",
                                                   family=codes.cid7162.ArtificialIntelligence,
                                                   version=derivation.version)
    if organ is None:
        category, kind = codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm
    else:
        category = codes.SCT.AnatomicalStructure
        kind = getattr(codes.SCT, organ.capitalize(), codes.SCT.Organ)
    return hd.seg.SegmentDescription(segment_number=number, segment_label=label, segmented_property_category=category,
                                     segmented_property_type=kind, algorithm_type="AUTOMATIC",
                                     algorithm_identification=algorithm)


def _fix_volatile(seg, first, derivation: Derivation, role: str) -> None:
    """Replace what highdicom stamps from the clock or draws at random, so that the SEG is a function of its inputs.

    Dates and times become the input series' own (else its study's); the dimension organisation
    UID is derived like every other UID.
    """
    date = str(getattr(first, "SeriesDate", "") or getattr(first, "StudyDate", "") or "19700101")
    time = str(getattr(first, "SeriesTime", "") or getattr(first, "StudyTime", "") or "000000")
    for date_keyword, time_keyword in (("SeriesDate", "SeriesTime"), ("ContentDate", "ContentTime")):
        setattr(seg, date_keyword, date)
        setattr(seg, time_keyword, time)
    for keyword in ("InstanceCreationDate", "InstanceCreationTime"):
        if keyword in seg:
            delattr(seg, keyword)
    for item in getattr(seg, "ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = date + time
    organisation = derived_uid(derivation.uid_key, role, "dimension organisation")
    for keyword in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
        for item in getattr(seg, keyword, []):
            if "DimensionOrganizationUID" in item:
                item.DimensionOrganizationUID = organisation


def _segmentation(hd, series, frames, segments, descriptions, derivation: Derivation, role: str):
    return hd.seg.Segmentation(
        source_images=list(series), pixel_array=frames if len(segments) > 1 else frames.astype(bool),
        segmentation_type="BINARY", segment_descriptions=descriptions,
        series_instance_uid=derived_uid(derivation.uid_key, role, "series"), series_number=900,
        sop_instance_uid=derived_uid(derivation.uid_key, role, "sop"), instance_number=1,
        manufacturer="tumorsyn", manufacturer_model_name="tumorsyn", software_versions=derivation.version,
        device_serial_number="0", content_description=derivation.description[:64],
        content_label=role.upper(), omit_empty_frames=True)


def write_seg_like(path: str | Path, series: Sequence, scan, labels_canonical: np.ndarray,
                   segments: Sequence[tuple[str, str | None]], derivation: Derivation, *, role: str) -> None:
    """Write a label array as a DICOM-SEG object (BINARY, one segment per label) referencing ``series``.

    Parameters
    ----------
    path : str or Path
        The ``.dcm`` file to write (atomically).
    series : sequence of pydicom.Dataset
        The derived series the SEG overlays, in volume order (from :func:`write_series_like`).
    scan : Scan
        The input (its orientation maps canonical arrays to the series' slices).
    labels_canonical : ndarray of int, shape (X, Y, Z)
        0 background, ``k`` = segment ``k`` (``segments[k - 1]``).
    segments : sequence of (label, organ or None)
        Segment labels; ``organ`` None marks the synthetic tumour, else the segment is that organ.
    derivation : Derivation
    role : str
        ``tumor`` or ``label``: part of the SEG's UIDs and its SeriesDescription.
    """
    import highdicom as hd
    from pydicom.filewriter import dcmwrite

    labels = np.asarray(scan.from_canonical(np.asarray(labels_canonical).astype(np.uint8)))
    frames = np.ascontiguousarray(np.transpose(labels, (2, 1, 0)))  # (slice, row, column), as the series
    descriptions = [_segment_description(k + 1, label, organ, derivation) for k, (label, organ) in enumerate(segments)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # highdicom's notes on optional attributes are not the user's business
        try:
            seg = _segmentation(hd, series, frames, segments, descriptions, derivation, role)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            # highdicom checks the series' headers (geometry, required attributes): one line naming the input.
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"cannot make the DICOM-SEG {Path(path).name} from this series ({reason}); "
                             f"use --output-format nifti", path=scan.path) from None

    _fix_volatile(seg, series[0], derivation, role)
    seg.SeriesDescription = f"synthetic {derivation.organ} tumour {role} (tumorsyn)"[:64]
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            dcmwrite(tmp, seg, enforce_file_format=True)
        except OSError as exc:
            raise InputError(f"cannot write output ({exc.strerror or exc})", path=path) from None
